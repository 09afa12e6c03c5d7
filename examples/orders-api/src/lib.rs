//! A small orders API protected by jwtd-tower: every route but `/health` and `/greeting` needs a
//! verified token; `/orders` also needs the `orders:read` scope; `/greeting` works with or
//! without one.

use axum::routing::get;
use axum::{Json, Router};
use jwtd_tower::{Claims, JwtdLayer, OptionalClaims};
use serde::Deserialize;
use serde_json::{json, Value};

/// The claims this API reads.
#[derive(Debug, Deserialize)]
pub struct User {
    /// Subject.
    pub sub: String,
    /// Optional e-mail.
    #[serde(default)]
    pub email: Option<String>,
}

async fn me(Claims(user): Claims<User>) -> Json<Value> {
    Json(json!({"sub": user.sub, "email": user.email}))
}

async fn orders(Claims(user): Claims<User>) -> Json<Value> {
    Json(json!({"owner": user.sub, "orders": [{"id": 1, "total": 42}]}))
}

async fn greeting(OptionalClaims(user): OptionalClaims<User>) -> String {
    match user {
        Some(u) => format!("hello, {}", u.sub),
        None => "hello, guest".into(),
    }
}

/// The application: `jwtd` verifies tokens for the protected routes.
pub fn app(jwtd: JwtdLayer) -> Router {
    let protected = Router::new()
        .route("/me", get(me))
        .merge(
            Router::new()
                .route("/orders", get(orders))
                .route_layer(jwtd_tower::require_scope("orders:read")),
        )
        .layer(jwtd.clone());
    let open = Router::new()
        .route("/greeting", get(greeting))
        .layer(jwtd.optional());
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .merge(protected)
        .merge(open)
}
