//! jwtd-tower's integration tests in one test binary: the layer over HTTP (`cache`) and in
//! front of a tonic gRPC server (`grpc`).

mod cache;
mod grpc;
