//! jwtd in front of a real tonic gRPC server, called by a real tonic client over HTTP/2 on
//! loopback: the token travels in `authorization` metadata; rejections are gRPC statuses; the
//! handler reads the verified identity from the request's extensions.

use jwtd_tower::{Identity, JwtdLayer};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::codegen::http;
use tonic::Code;

const SECRET: &str = "grpc-test-secret-0123456789abcdef0123";

#[derive(Clone, PartialEq, prost::Message)]
struct HelloRequest {
    #[prost(string, tag = "1")]
    name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HelloReply {
    #[prost(string, tag = "1")]
    message: String,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What generated code would be: the `test.Greeter` service with one unary method.
#[derive(Clone)]
struct Greeter;

impl tonic::server::NamedService for Greeter {
    const NAME: &'static str = "test.Greeter";
}

impl tower::Service<http::Request<tonic::body::Body>> for Greeter {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<HelloReply, HelloRequest>::default();
            Ok(tonic::server::Grpc::new(codec).unary(SayHello, req).await)
        })
    }
}

struct SayHello;

impl tower::Service<tonic::Request<HelloRequest>> for SayHello {
    type Response = tonic::Response<HelloReply>;
    type Error = tonic::Status;
    type Future = BoxFuture<Result<Self::Response, tonic::Status>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), tonic::Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: tonic::Request<HelloRequest>) -> Self::Future {
        let who = req
            .extensions()
            .get::<Identity>()
            .and_then(|id| id.verified.sub().map(str::to_owned));
        let name = req.into_inner().name;
        Box::pin(async move {
            match who {
                Some(sub) => Ok(tonic::Response::new(HelloReply {
                    message: format!("hello {name}, you are {sub}"),
                })),
                None => Err(tonic::Status::internal("no identity")),
            }
        })
    }
}

fn token(sub: &str, scope: &str, exp_in: i64) -> String {
    let now = jwtd_core::unix_now() as i64;
    let c = serde_json::json!({"iss": "https://app.test", "aud": "grpc", "sub": sub, "scope": scope, "iat": now, "exp": now + exp_in});
    jwtd_test_support::hs256(SECRET.as_bytes(), &c)
}

async fn serve(require_scope: Option<&str>) -> String {
    let config = jwtd_gate::config::GateConfig::parse_with_env(
        "[[issuer]]\nname = \"app\"\nissuer = \"https://app.test\"\nsecret_env = \"JWTD_GRPC_SECRET\"\n\
         algorithms = [\"HS256\"]\naudiences = [\"grpc\"]\n",
        "test",
        &jwtd_gate::Env::from_vars([("JWTD_GRPC_SECRET", SECRET)]),
    )
    .unwrap();
    let jwtd = JwtdLayer::from_config(&config).unwrap().grpc();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let scope = require_scope.map(|s| jwtd_tower::require_scope(s).grpc());
    tokio::spawn(async move {
        let mut server = tonic::transport::Server::builder()
            .layer(jwtd)
            .layer(tower::util::option_layer(scope));
        server
            .add_service(Greeter)
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    format!("http://{addr}")
}

async fn call(base: &str, bearer: Option<&str>) -> Result<String, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(base.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let mut req = tonic::Request::new(HelloRequest {
        name: "grpc".into(),
    });
    if let Some(t) = bearer {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let path = http::uri::PathAndQuery::from_static("/test.Greeter/SayHello");
    let codec = tonic_prost::ProstCodec::<HelloRequest, HelloReply>::default();
    client
        .unary(req, path, codec)
        .await
        .map(|r| r.into_inner().message)
}

#[tokio::test]
async fn tonic_server_behind_jwtd() {
    let base = serve(None).await;
    let ok = call(&base, Some(&token("alice", "greet", 60)))
        .await
        .unwrap();
    assert_eq!(ok, "hello grpc, you are alice");

    let e = call(&base, None).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().starts_with("missing_token"), "{}", e.message());

    let e = call(&base, Some(&token("alice", "greet", -120)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().starts_with("expired: "), "{}", e.message());

    let e = call(&base, Some("not-a-token")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().starts_with("malformed"), "{}", e.message());
}

#[tokio::test]
async fn a_scope_requirement_answers_permission_denied() {
    let base = serve(Some("greet")).await;
    let ok = call(&base, Some(&token("bob", "read greet", 60))).await;
    assert_eq!(ok.unwrap(), "hello grpc, you are bob");
    let e = call(&base, Some(&token("bob", "read", 60)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().starts_with("claim_mismatch"), "{}", e.message());
}
