//! `orders-api CONFIG [ADDR]`: serves the example API, verifying tokens with the issuers of a
//! jwtd configuration file.

#[tokio::main]
async fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let config = args
        .next()
        .ok_or("usage: orders-api jwtd.toml [127.0.0.1:3000]")?;
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:3000".into());
    let jwtd = jwtd_tower::JwtdLayer::from_config_file(config.as_ref()).await?;
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!("orders-api on http://{addr}");
    axum::serve(listener, orders_api::app(jwtd))
        .await
        .map_err(|e| e.to_string())
}
