//! `cargo bench -p jwtd-bench`: verify cost per algorithm for the raw aws-lc-rs primitive,
//! jwtd-core and the jsonwebtoken crate, measured in the same run. For numbers that hold on a
//! noisy machine use the instruction-count mode: `cargo run -p jwtd-bench --release -- instructions`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use jwtd_bench::{Fixture, ALGS};

fn verify(c: &mut Criterion) {
    for alg in ALGS {
        let f = Fixture::new(alg);
        let mut g = c.benchmark_group(format!("verify/{alg}"));
        g.bench_function("raw-aws-lc-rs", |b| {
            b.iter(|| assert!(black_box(&f).run_raw()))
        });
        g.bench_function("jwtd", |b| b.iter(|| assert!(black_box(&f).run_jwtd())));
        if f.jsonwebtoken.is_some() {
            g.bench_function("jsonwebtoken", |b| {
                b.iter(|| assert!(black_box(&f).run_jsonwebtoken().unwrap()))
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = verify
}
criterion_main!(benches);
