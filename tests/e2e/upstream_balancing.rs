//! Load balancing end to end: round robin exact (and by endpoint weight), random and least
//! request statistically (wide bounds), consistent hash on a header, a cookie (generated with
//! `set-cookie` when absent), the source IP and a query parameter, ring hash and Maglev.

use crate::support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use support::{
    destination_rule, eventually, gateway_yaml, service_at, virtual_service, Client, Mode,
    TestGateway, Upstream,
};

async fn start(n: usize) -> Vec<Upstream> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push(Upstream::start(&format!("u{i}")).await);
    }
    v
}

async fn gateway(ups: &[Upstream], policy: &str) -> TestGateway {
    let addrs: Vec<_> = ups.iter().map(|u| u.addr).collect();
    let yaml = gateway_yaml(&["*"])
        + &service_at("a.svc", "HTTP", &addrs)
        + &destination_rule("a.svc", policy)
        + &virtual_service("  - route: [{destination: {host: a.svc}}]\n");
    TestGateway::start(&yaml).await
}

fn hits(ups: &[Upstream]) -> Vec<usize> {
    ups.iter().map(|u| u.hits()).collect()
}

#[tokio::test]
async fn round_robin_is_exact() {
    let ups = start(3).await;
    let gw = gateway(&ups, "{loadBalancer: {simple: ROUND_ROBIN}}").await;
    let c = Client::http1(gw.addr());
    for _ in 0..300 {
        c.get("x", "/").await;
    }
    assert_eq!(hits(&ups), vec![100, 100, 100]);
}

#[tokio::test]
async fn round_robin_honours_endpoint_weights() {
    let ups = start(2).await;
    let yaml = gateway_yaml(&["*"])
        + &format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: w}}\nspec:\n  hosts: [a.svc]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints:\n  - {{address: 127.0.0.1, ports: {{http: {}}}, weight: 3}}\n  - {{address: 127.0.0.1, ports: {{http: {}}}, weight: 1}}\n---\n",
            ups[0].addr.port(),
            ups[1].addr.port()
        )
        + &destination_rule("a.svc", "{loadBalancer: {simple: ROUND_ROBIN}}")
        + &virtual_service("  - route: [{destination: {host: a.svc}}]\n");
    let gw = TestGateway::start(&yaml).await;
    let c = Client::http1(gw.addr());
    for _ in 0..400 {
        c.get("x", "/").await;
    }
    assert_eq!(hits(&ups), vec![300, 100]);
}

#[tokio::test]
async fn random_spreads_requests() {
    let ups = start(3).await;
    let gw = gateway(&ups, "{loadBalancer: {simple: RANDOM}}").await;
    let c = Client::http1(gw.addr());
    for _ in 0..900 {
        c.get("x", "/").await;
    }
    // Binomial(900, 1/3): sd ≈ 14; ±7 sd.
    for h in hits(&ups) {
        assert!((200..=400).contains(&h), "{:?}", hits(&ups));
    }
}

#[tokio::test]
async fn least_request_prefers_the_less_loaded_endpoint() {
    let ups = start(2).await;
    ups[0].set_mode(Mode::Hang);
    // LEAST_REQUEST is the default: no DestinationRule needed.
    let yaml = gateway_yaml(&["*"])
        + &service_at("a.svc", "HTTP", &[ups[0].addr, ups[1].addr])
        + &virtual_service("  - route: [{destination: {host: a.svc}}]\n    timeout: 20s\n");
    let gw = TestGateway::start(&yaml).await;
    let n = 80;
    let mut hung = Vec::new();
    for i in 0..n {
        let c = Client::http1(gw.addr());
        let task = tokio::spawn(async move { c.get("x", "/").await });
        // Wait (bounded) until this request was served by one of the two: either it finished on
        // the fast endpoint, or the hanging one holds one more request.
        let held = ups[0].in_flight();
        let settled = eventually(Duration::from_secs(10), || {
            task.is_finished() || ups[0].in_flight() > held
        })
        .await;
        assert!(settled, "request {i} went nowhere");
        if !task.is_finished() {
            hung.push(task);
        }
    }
    // Once the hanging endpoint holds a request, it is chosen only when both random choices
    // fall on it (1/4); round robin would give it half. Binomial(80, 1/4): mean 20, sd 3.9.
    let slow = ups[0].hits();
    assert!(slow < 40, "the loaded endpoint got {slow} of {n}");
    assert_eq!(slow, hung.len());
    for t in hung {
        t.abort();
    }
}

#[tokio::test]
async fn consistent_hash_on_a_header_is_stable_per_key() {
    for table in [
        "",
        ", ringHash: {minimumRingSize: 2048}",
        ", maglev: {tableSize: 1009}",
    ] {
        let ups = start(3).await;
        let gw = gateway(
            &ups,
            &format!("{{loadBalancer: {{consistentHash: {{httpHeaderName: x-user{table}}}}}}}"),
        )
        .await;
        let c = Client::http1(gw.addr());
        let mut owner: HashMap<u32, String> = HashMap::new();
        for round in 0..4 {
            for user in 0..30u32 {
                let req = c
                    .request("x", "/")
                    .header("x-user", format!("user-{user}"))
                    .body(Default::default())
                    .unwrap();
                let got = c.send(req).await.upstream().to_owned();
                let first = owner.entry(user).or_insert_with(|| got.clone());
                assert_eq!(*first, got, "user {user}, round {round}, table {table:?}");
            }
        }
        let used: HashSet<&String> = owner.values().collect();
        assert!(used.len() >= 2, "30 keys all on {used:?}");
    }
}

#[tokio::test]
async fn consistent_hash_cookie_is_generated_when_absent() {
    let ups = start(3).await;
    let gw = gateway(
        &ups,
        "{loadBalancer: {consistentHash: {httpCookie: {name: sticky, path: /, ttl: 60s}}}}",
    )
    .await;
    let c = Client::http1(gw.addr());
    let r = c.get("x", "/").await;
    let set = r
        .header("set-cookie")
        .expect("a cookie is generated")
        .to_owned();
    assert!(set.starts_with("sticky=\""), "{set}");
    assert!(set.ends_with("; Max-Age=60; Path=/; HttpOnly"), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    let first = r.upstream().to_owned();
    for _ in 0..20 {
        let req = c
            .request("x", "/")
            .header("cookie", &cookie)
            .body(Default::default())
            .unwrap();
        let r = c.send(req).await;
        assert_eq!(r.upstream(), first, "the cookie pins the endpoint");
        assert!(
            r.header("set-cookie").is_none(),
            "no new cookie when one is sent"
        );
    }
}

#[tokio::test]
async fn consistent_hash_on_source_ip_and_query_parameter() {
    let ups = start(3).await;
    let gw = gateway(
        &ups,
        "{loadBalancer: {consistentHash: {useSourceIp: true}}}",
    )
    .await;
    let c = Client::http1(gw.addr());
    for _ in 0..30 {
        c.get("x", "/").await;
    }
    let mut h = hits(&ups);
    h.sort_unstable();
    assert_eq!(h, vec![0, 0, 30], "one client address, one endpoint");

    let ups = start(3).await;
    let gw = gateway(
        &ups,
        "{loadBalancer: {consistentHash: {httpQueryParameterName: id}}}",
    )
    .await;
    let c = Client::http1(gw.addr());
    let mut owners = HashSet::new();
    for id in 0..20 {
        let first = c
            .get("x", &format!("/?id={id}"))
            .await
            .upstream()
            .to_owned();
        for _ in 0..3 {
            assert_eq!(
                c.get("x", &format!("/p?x=1&id={id}")).await.upstream(),
                first
            );
        }
        owners.insert(first);
    }
    assert!(owners.len() >= 2, "{owners:?}");
}
