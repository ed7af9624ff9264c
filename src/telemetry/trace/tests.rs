use super::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
const FRESH: Fresh = Fresh {
    trace_id: 0x1111_2222_3333_4444_5555_6666_7777_8888,
    span_id: 0xaaaa_bbbb_cccc_dddd,
    sampled: false,
};

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn decide(pairs: &[(&str, &str)]) -> TraceContext {
    TraceContext::decide(&Incoming::parse(&headers(pairs)), FRESH)
}

fn injected(cx: &TraceContext) -> HeaderMap {
    let mut h = HeaderMap::new();
    cx.inject(&mut h);
    h
}

fn get<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).map(|v| v.to_str().unwrap())
}

// === traceparent ===

#[test]
fn traceparent_valid_sampled_and_not() {
    let tp = parse_traceparent(&format!("00-{TRACE}-{PARENT}-01")).unwrap();
    assert_eq!(tp.trace_id, u128::from_str_radix(TRACE, 16).unwrap());
    assert_eq!(tp.parent_id, 0x00f0_67aa_0ba9_02b7);
    assert!(tp.sampled);
    assert!(
        !parse_traceparent(&format!("00-{TRACE}-{PARENT}-00"))
            .unwrap()
            .sampled
    );
    // Only the sampled bit counts.
    assert!(
        !parse_traceparent(&format!("00-{TRACE}-{PARENT}-02"))
            .unwrap()
            .sampled
    );
    assert!(
        parse_traceparent(&format!("00-{TRACE}-{PARENT}-03"))
            .unwrap()
            .sampled
    );
}

#[test]
fn traceparent_malformed_forms_are_rejected() {
    let bad = [
        String::new(),
        "garbage".into(),
        format!("00-{TRACE}-{PARENT}"),
        format!("00-{TRACE}-{PARENT}-1"),
        format!("00-{TRACE}-{PARENT}-01-"),
        format!("00-{TRACE}-{PARENT}-01-extra"),
        format!("00_{TRACE}-{PARENT}-01"),
        format!("00-{}-{PARENT}-01", TRACE.to_uppercase()),
        format!("00-{TRACE}-{}-01", PARENT.to_uppercase()),
        format!("00-{}-{PARENT}-01", "0".repeat(32)),
        format!("00-{TRACE}-{}-01", "0".repeat(16)),
        format!("00-{}-{PARENT}-01", &TRACE[1..]),
        format!("00-{TRACE}x-{PARENT}-01"),
        format!("00-{TRACE}-{PARENT}-0g"),
        format!("ff-{TRACE}-{PARENT}-01"),
        format!("0g-{TRACE}-{PARENT}-01"),
        format!("00-{}-{PARENT}-01", "g".repeat(32)),
        format!("00-{TRACE}-{PARENT}-é"),
    ];
    for v in &bad {
        assert_eq!(parse_traceparent(v), None, "{v:?}");
    }
}

#[test]
fn traceparent_later_versions_read_as_00() {
    assert!(parse_traceparent(&format!("01-{TRACE}-{PARENT}-01")).is_some());
    assert!(parse_traceparent(&format!("cc-{TRACE}-{PARENT}-01-what-the-future-holds")).is_some());
    assert_eq!(parse_traceparent(&format!("cc-{TRACE}-{PARENT}-01x")), None);
}

#[test]
fn w3c_in_continues_the_trace_with_a_new_parent() {
    let cx = decide(&[
        ("traceparent", &format!("00-{TRACE}-{PARENT}-01")),
        ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
    ]);
    assert_eq!(cx.origin, Origin::W3c);
    assert_eq!(cx.trace_id_hex(), TRACE);
    assert_eq!(cx.parent_id, Some(0x00f0_67aa_0ba9_02b7));
    assert_eq!(cx.span_id, FRESH.span_id);
    assert!(cx.sampled, "the incoming flag wins over the sampler");
    assert_eq!(cx.b3, None, "W3C only in: W3C only out");
    let h = injected(&cx);
    assert_eq!(
        get(&h, "traceparent").unwrap(),
        format!("00-{TRACE}-aaaabbbbccccdddd-01")
    );
    assert_eq!(
        get(&h, "tracestate"),
        Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    );
    assert!(get(&h, "x-b3-traceid").is_none() && get(&h, "b3").is_none());
}

#[test]
fn w3c_not_sampled_stays_not_sampled_even_when_client_forced() {
    let cx = decide(&[
        ("traceparent", &format!("00-{TRACE}-{PARENT}-00")),
        ("x-client-trace-id", "abc"),
    ]);
    assert!(!cx.sampled);
    assert!(get(&injected(&cx), "traceparent").unwrap().ends_with("-00"));
}

#[test]
fn tracestate_repeated_headers_are_joined_and_malformed_is_dropped() {
    let tp = format!("00-{TRACE}-{PARENT}-01");
    let cx = decide(&[
        ("traceparent", &tp),
        ("tracestate", "a=1"),
        ("tracestate", "b@vendor=2"),
    ]);
    assert_eq!(cx.tracestate.as_deref(), Some("a=1,b@vendor=2"));
    for bad in [
        "novalue", "=x", "A=1", "a=1,b", "a=b=c", "a=1 ,,b=", "a@b@c=1",
    ] {
        let cx = decide(&[("traceparent", &tp), ("tracestate", bad)]);
        assert_eq!(cx.tracestate, None, "{bad:?}");
        assert_eq!(cx.origin, Origin::W3c, "the traceparent stays");
    }
    let many = (0..33)
        .map(|i| format!("k{i}=v"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        decide(&[("traceparent", &tp), ("tracestate", &many)]).tracestate,
        None
    );
    // Without a valid traceparent, tracestate is never forwarded.
    let cx = decide(&[("traceparent", "bad"), ("tracestate", "a=1")]);
    assert_eq!(cx.tracestate, None);
    assert!(get(&injected(&cx), "tracestate").is_none());
}

#[test]
fn repeated_traceparent_is_malformed() {
    let tp = format!("00-{TRACE}-{PARENT}-01");
    let cx = decide(&[("traceparent", &tp), ("traceparent", &tp)]);
    assert_eq!(cx.origin, Origin::New);
}

// === B3 ===

#[test]
fn b3_single_forms() {
    let t64 = "a3ce929d0e0e4736";
    let full = parse_b3_single(&format!("{TRACE}-{PARENT}-1-{t64}")).unwrap();
    assert_eq!(
        full.ids,
        Some((
            u128::from_str_radix(TRACE, 16).unwrap(),
            false,
            0x00f0_67aa_0ba9_02b7
        ))
    );
    assert_eq!(full.sampling, Some(Sampling::Accept));
    let short = parse_b3_single(&format!("{t64}-{PARENT}")).unwrap();
    assert!(short.ids.unwrap().1, "64-bit trace id");
    assert_eq!(short.sampling, None);
    assert_eq!(
        parse_b3_single(&format!("{TRACE}-{PARENT}-d"))
            .unwrap()
            .sampling,
        Some(Sampling::Debug)
    );
    assert_eq!(
        parse_b3_single(&format!("{TRACE}-{PARENT}-0"))
            .unwrap()
            .sampling,
        Some(Sampling::Deny)
    );
    for only in ["0", "1", "d"] {
        let b = parse_b3_single(only).unwrap();
        assert_eq!(b.ids, None);
        assert!(b.sampling.is_some());
    }
}

#[test]
fn b3_single_malformed_forms_are_rejected() {
    let bad = [
        String::new(),
        "2".into(),
        "true".into(),
        TRACE.into(),
        format!("{TRACE}-"),
        format!("{TRACE}-{PARENT}-"),
        format!("{TRACE}-{PARENT}-x"),
        format!("{TRACE}-{PARENT}-1-"),
        format!("{TRACE}-{PARENT}-1-{PARENT}-1"),
        format!("{TRACE}-{PARENT}-{PARENT}"),
        format!("{}-{PARENT}-1", TRACE.to_uppercase()),
        format!("{}-{PARENT}-1", "0".repeat(32)),
        format!("{TRACE}-{}-1", "0".repeat(16)),
        format!("{}-{PARENT}-1", &TRACE[..20]),
        format!("{TRACE}-{}-1", &PARENT[..15]),
        format!("{TRACE}-{PARENT}-1-{}", "0".repeat(16)),
    ];
    for v in &bad {
        assert_eq!(parse_b3_single(v), None, "{v:?}");
    }
}

#[test]
fn b3_multi_forms() {
    let h = headers(&[
        ("x-b3-traceid", TRACE),
        ("x-b3-spanid", PARENT),
        ("x-b3-parentspanid", "0102030405060708"),
        ("x-b3-sampled", "1"),
    ]);
    let b = parse_b3_multi(&h).unwrap();
    assert_eq!(b.ids.unwrap().2, 0x00f0_67aa_0ba9_02b7);
    assert_eq!(b.sampling, Some(Sampling::Accept));
    let h = headers(&[
        ("x-b3-traceid", "a3ce929d0e0e4736"),
        ("x-b3-spanid", PARENT),
    ]);
    let b = parse_b3_multi(&h).unwrap();
    assert!(b.ids.unwrap().1, "64-bit trace id");
    assert_eq!(b.sampling, None);
    for (v, want) in [
        ("0", Some(Sampling::Deny)),
        ("false", Some(Sampling::Deny)),
        ("true", Some(Sampling::Accept)),
        ("yes", None),
    ] {
        let h = headers(&[("x-b3-sampled", v)]);
        assert_eq!(parse_b3_multi(&h).unwrap().sampling, want, "{v}");
    }
    let h = headers(&[("x-b3-flags", "1"), ("x-b3-sampled", "0")]);
    assert_eq!(parse_b3_multi(&h).unwrap().sampling, Some(Sampling::Debug));
}

#[test]
fn b3_multi_malformed_ids_are_rejected() {
    let bad: [&[(&str, &str)]; 6] = [
        &[("x-b3-traceid", TRACE)],
        &[("x-b3-spanid", PARENT)],
        &[("x-b3-traceid", "xyz"), ("x-b3-spanid", PARENT)],
        &[("x-b3-traceid", TRACE), ("x-b3-spanid", "0000000000000000")],
        &[
            ("x-b3-traceid", TRACE),
            ("x-b3-spanid", PARENT),
            ("x-b3-parentspanid", "nope"),
        ],
        &[
            ("x-b3-traceid", TRACE),
            ("x-b3-traceid", TRACE),
            ("x-b3-spanid", PARENT),
        ],
    ];
    for pairs in bad {
        assert_eq!(parse_b3_multi(&headers(pairs)), None, "{pairs:?}");
    }
}

#[test]
fn b3_multi_in_gives_b3_multi_and_traceparent_out() {
    let cx = decide(&[
        ("x-b3-traceid", TRACE),
        ("x-b3-spanid", PARENT),
        ("x-b3-parentspanid", "0102030405060708"),
        ("x-b3-sampled", "1"),
    ]);
    assert_eq!(cx.origin, Origin::B3);
    assert_eq!(cx.b3, Some(B3Style::Multi));
    let h = injected(&cx);
    assert_eq!(get(&h, "x-b3-traceid"), Some(TRACE));
    assert_eq!(get(&h, "x-b3-spanid"), Some("aaaabbbbccccdddd"));
    assert_eq!(get(&h, "x-b3-parentspanid"), Some(PARENT));
    assert_eq!(get(&h, "x-b3-sampled"), Some("1"));
    assert_eq!(
        get(&h, "traceparent").unwrap(),
        format!("00-{TRACE}-aaaabbbbccccdddd-01")
    );
    assert!(get(&h, "b3").is_none());
}

#[test]
fn b3_multi_64bit_trace_id_keeps_its_width() {
    let cx = decide(&[
        ("x-b3-traceid", "a3ce929d0e0e4736"),
        ("x-b3-spanid", PARENT),
        ("x-b3-sampled", "0"),
    ]);
    let h = injected(&cx);
    assert_eq!(get(&h, "x-b3-traceid"), Some("a3ce929d0e0e4736"));
    assert_eq!(
        get(&h, "traceparent").unwrap(),
        "00-0000000000000000a3ce929d0e0e4736-aaaabbbbccccdddd-00"
    );
}

#[test]
fn b3_single_in_gives_b3_single_out() {
    let cx = decide(&[("b3", &format!("{TRACE}-{PARENT}-1-0102030405060708"))]);
    let h = injected(&cx);
    assert_eq!(
        get(&h, "b3").unwrap(),
        format!("{TRACE}-aaaabbbbccccdddd-1-{PARENT}")
    );
    assert!(get(&h, "x-b3-traceid").is_none());
    assert!(get(&h, "traceparent").is_some());
}

#[test]
fn b3_debug_is_sampled_and_passed_on() {
    let cx = decide(&[("b3", &format!("{TRACE}-{PARENT}-d"))]);
    assert!(cx.sampled && cx.debug);
    assert!(get(&injected(&cx), "b3").unwrap().contains("-d-"));
    let cx = decide(&[
        ("x-b3-traceid", TRACE),
        ("x-b3-spanid", PARENT),
        ("x-b3-flags", "1"),
    ]);
    let h = injected(&cx);
    assert_eq!(get(&h, "x-b3-flags"), Some("1"));
    assert!(get(&h, "x-b3-sampled").is_none(), "debug implies accept");
}

#[test]
fn b3_deferred_sampling_is_the_gateways() {
    let cx = decide(&[("x-b3-traceid", TRACE), ("x-b3-spanid", PARENT)]);
    assert!(!cx.sampled);
    let incoming = Incoming::parse(&headers(&[("b3", &format!("{TRACE}-{PARENT}"))]));
    let cx = TraceContext::decide(
        &incoming,
        Fresh {
            sampled: true,
            ..FRESH
        },
    );
    assert!(cx.sampled);
    assert_eq!(
        get(&injected(&cx), "b3").unwrap().split('-').nth(2),
        Some("1")
    );
}

#[test]
fn b3_sampling_alone_starts_a_trace_with_that_decision() {
    let cx = decide(&[("b3", "1")]);
    assert_eq!(cx.origin, Origin::New);
    assert!(cx.sampled);
    assert_eq!(cx.parent_id, None);
    assert_eq!(
        get(&injected(&cx), "b3").unwrap(),
        "11112222333344445555666677778888-aaaabbbbccccdddd-1"
    );
    let cx = decide(&[("x-b3-sampled", "0"), ("x-client-trace-id", "x")]);
    assert!(
        !cx.sampled,
        "an explicit deny wins over a client-forced trace"
    );
}

#[test]
fn w3c_wins_over_b3_and_both_go_out() {
    let other = "0af7651916cd43dd8448eb211c80319c";
    let cx = decide(&[
        ("traceparent", &format!("00-{TRACE}-{PARENT}-01")),
        ("b3", &format!("{other}-{PARENT}-0")),
    ]);
    assert_eq!(cx.origin, Origin::W3c);
    assert!(cx.sampled);
    let h = injected(&cx);
    assert_eq!(
        get(&h, "b3").unwrap(),
        format!("{TRACE}-aaaabbbbccccdddd-1-{PARENT}")
    );
}

#[test]
fn malformed_w3c_falls_back_to_valid_b3() {
    let cx = decide(&[
        ("traceparent", "00-nope"),
        ("tracestate", "a=1"),
        ("x-b3-traceid", TRACE),
        ("x-b3-spanid", PARENT),
    ]);
    assert_eq!(cx.origin, Origin::B3);
    assert_eq!(cx.tracestate, None);
}

// === no context / malformed ===

#[test]
fn nothing_in_starts_a_trace_in_both_formats() {
    let cx = decide(&[]);
    assert_eq!(cx.origin, Origin::New);
    assert_eq!(cx.parent_id, None);
    assert!(!cx.sampled);
    let h = injected(&cx);
    assert_eq!(
        get(&h, "traceparent"),
        Some("00-11112222333344445555666677778888-aaaabbbbccccdddd-00")
    );
    assert_eq!(
        get(&h, "x-b3-traceid"),
        Some("11112222333344445555666677778888")
    );
    assert_eq!(get(&h, "x-b3-spanid"), Some("aaaabbbbccccdddd"));
    assert!(get(&h, "x-b3-parentspanid").is_none());
    assert_eq!(get(&h, "x-b3-sampled"), Some("0"));
}

#[test]
fn client_trace_id_forces_sampling() {
    assert!(decide(&[("x-client-trace-id", "my-trace")]).sampled);
    assert!(!decide(&[("x-client-trace-id", "")]).sampled);
}

#[test]
fn malformed_headers_are_never_forwarded() {
    let cx = decide(&[
        ("traceparent", "00-zzzz-01"),
        ("tracestate", "a=1"),
        ("b3", "not-b3"),
    ]);
    assert_eq!(cx.origin, Origin::New);
    let mut h = headers(&[
        ("traceparent", "00-zzzz-01"),
        ("tracestate", "a=1"),
        ("b3", "not-b3"),
        ("x-b3-traceid", "bad"),
        ("x-b3-flags", "7"),
    ]);
    cx.inject(&mut h);
    assert_eq!(
        get(&h, "traceparent"),
        Some("00-11112222333344445555666677778888-aaaabbbbccccdddd-00")
    );
    assert!(get(&h, "tracestate").is_none());
    assert_eq!(
        get(&h, "b3"),
        Some("11112222333344445555666677778888-aaaabbbbccccdddd-0"),
        "B3 in the style the client used"
    );
    assert!(get(&h, "x-b3-traceid").is_none() && get(&h, "x-b3-flags").is_none());
}

#[test]
fn sampler_percent_bounds() {
    let h = HeaderMap::new();
    assert!((0..200).all(|_| Sampler::new(100.0).start(&h).sampled));
    assert!((0..200).all(|_| !Sampler::new(0.0).start(&h).sampled));
    assert!((0..200).all(|_| !Sampler::new(f64::NAN).start(&h).sampled));
    let cx = Sampler::new(1.0).start(&h);
    assert_ne!(cx.trace_id, 0);
    assert_ne!(cx.span_id, 0);
    let tp = cx.traceparent();
    assert_eq!(
        parse_traceparent(&tp).map(|p| p.trace_id),
        Some(cx.trace_id)
    );
}

/// The name checks that stand in for lookups know exactly the trace headers: each one makes
/// `Incoming::parse` read the request, and a name that only looks alike does not.
#[test]
fn the_name_checks_know_every_trace_header() {
    for name in TRACE_HEADERS.iter().chain([&X_CLIENT_TRACE_ID]) {
        assert!(is_incoming_name(name.as_str()), "{name}");
    }
    for name in &TRACE_HEADERS {
        assert!(is_trace_name(name.as_str()), "{name}");
    }
    assert!(!is_trace_name("x-client-trace-id"));
    for other in ["b3x", "x-b3", "traceparents", "x-request-id", "host"] {
        assert!(!is_incoming_name(other), "{other}");
    }
    // Only x-client-trace-id: parsed (it forces sampling), not skipped by the fast path.
    let incoming = Incoming::parse(&headers(&[("x-client-trace-id", "abc")]));
    assert!(incoming.client_trace_id);
}
