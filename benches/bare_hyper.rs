//! The baseline for the load benchmark: the least an HTTP server on the
//! same stack can do with a beacon. hyper 1 (the version footfall uses) on a
//! tokio runtime with the same number of workers reads the request body and
//! answers 204. `benches/load.sh` runs it and `footfall serve` under the same
//! wrk load and prints footfall's figures as ratios of these.
//!
//! Usage: `bare-hyper ADDR THREADS`

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, body::Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

async fn handle(req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, Infallible> {
    // Read the body as a real endpoint must; an error is the client's.
    let _ = req.into_body().collect().await;
    let mut resp = Response::new(Empty::new());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    Ok(resp)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8081".into());
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(1);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(async move {
            let listener = TcpListener::bind(&addr).await.expect("bind");
            eprintln!("bare-hyper listening on {addr} with {threads} worker thread(s)");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let _ = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service_fn(handle))
                        .await;
                });
            }
        });
}
