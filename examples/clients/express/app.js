// A tiny Express app behind the jwtd middleware: `GET /whoami` answers the token's subject.
//   JWTD_URL=http://127.0.0.1:8080 PORT=3000 node app.js
'use strict';

const express = require('express');
const { jwtdAuth } = require('./middleware');

const app = express();

app.get('/whoami', jwtdAuth(), (req, res) => {
  res.json({ sub: req.jwt.claims.sub, iss: req.jwt.iss });
});

const port = Number(process.env.PORT || 3000);
app.listen(port, '127.0.0.1', () => console.log(`listening on 127.0.0.1:${port}`));
