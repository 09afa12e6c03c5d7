//! The `jwtd` binary's integration tests in one test binary: the command-line contract
//! (`cli`), `jwtd serve` as a process with the client samples and the Debian package
//! (`serve`, `serve::clients`, `serve::package`), docs/mcp.md's MCP configuration (`mcp`), and
//! real reverse proxies in front of it (`nginx`), certificate-bound tokens over TLS (`mtls`). Each test runs `jwtd` as a child process
//! with its own environment.

mod common;

mod cli;
mod dpop;
mod dpop_fronts;
mod dpop_shared;
mod mcp;
mod mtls;
mod nginx;
mod proxy;
mod serve;
