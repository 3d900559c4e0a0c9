use super::*;
use crate::fake::FakeHost;

#[test]
fn fixed_and_policy_counters() {
    let host = FakeHost::default();
    let mut m = Metrics::define(&host);
    m.define_policies(&host, &["api".into(), "a.b c".into(), "api".into()]);
    assert_eq!(
        host.defined_counters(),
        vec![
            ALLOWED,
            DENIED,
            DRY_RUN_ALLOWED,
            DRY_RUN_DENIED,
            NO_IDENTITY,
            INVALID_IDENTITY,
            CONFIG_ERRORS,
            DENIED_PATH,
            DENIED_METHOD,
            DENIED_HOST,
            DENIED_HEADER,
            "svidgate_policy.api.allowed",
            "svidgate_policy.api.denied",
            "svidgate_policy.a_b_c.allowed",
            "svidgate_policy.a_b_c.denied",
        ]
    );
    m.count_verdict(&host, true, Some("api"));
    m.count_verdict(&host, false, Some("a.b c"));
    m.count_verdict(&host, false, None);
    m.count_verdict(&host, true, Some("unknown"));
    assert_eq!(host.count(ALLOWED), 2);
    assert_eq!(host.count(DENIED), 2);
    assert_eq!(host.count("svidgate_policy.api.allowed"), 1);
    assert_eq!(host.count("svidgate_policy.a_b_c.denied"), 1);
}

#[test]
fn policy_counters_are_bounded() {
    let host = FakeHost::default();
    let mut m = Metrics::default();
    let names: Vec<String> = (0..MAX_POLICY_COUNTERS + 10)
        .map(|i| format!("p{i}"))
        .collect();
    m.define_policies(&host, &names);
    assert_eq!(m.per_policy.len(), MAX_POLICY_COUNTERS);
    assert_eq!(stat_segment(""), "_");
}

#[test]
fn tally_hands_over_each_count_once() {
    let mut t = Tally::default();
    let drained = |t: &mut Tally| {
        let mut out = Vec::new();
        t.drain(|id, n| out.push((id, n)));
        out
    };
    assert!(drained(&mut t).is_empty());
    for id in [7, 3, 7, 7, 3, 9] {
        t.add(id);
    }
    assert_eq!(drained(&mut t), vec![(7, 3), (3, 2), (9, 1)]);
    // Nothing twice; only what came since.
    assert!(drained(&mut t).is_empty());
    t.add(9);
    assert_eq!(drained(&mut t), vec![(9, 1)]);
}
