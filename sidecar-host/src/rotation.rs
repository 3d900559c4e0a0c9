//! Certificate rotation: when to renew (pure functions) and the loop that renews, publishes to
//! SDS and reports health.
//!
//! - Renew at `not_before + ratio × lifetime` (Istio's `SECRET_GRACE_PERIOD_RATIO`), the ratio
//!   jittered by ± `jitter` so a fleet started together does not renew together.
//! - On failure keep serving the current certificate while it is valid, and retry after a
//!   capped exponential backoff with jitter (no retry storm after a CA outage).
//! - One task runs the loop, so at most one CA request is ever in flight; triggers that arrive
//!   while a request is running are answered by that request.
//! - When the current certificate expires before a renewal succeeds, readiness turns false and
//!   `svidgate_cert_expired_total` is incremented.
//! - CAs back-date `not_before` to absorb clock skew (`svidgate ca` by 60 s). The lifetime is
//!   then counted from when we asked for the certificate, not from `not_before`: otherwise a
//!   short-lived certificate would be "due" the moment it arrives and the agent would renew in
//!   a loop.
//! - After each publish the source is told ([`SvidSource::published`]), so the agent renews
//!   over mTLS with its current certificate; when that certificate expires it is told again
//!   ([`SvidSource::expired`]) and stops presenting it.
//! - Near expiry the retry delay is capped at a third of the remaining life (at least the
//!   base delay), so a CA that comes back is used before the certificate runs out.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::bundle::TrustBundles;
use crate::metrics::Metrics;
use crate::sds::{SecretStore, Svid};

/// When to renew a certificate valid from `not_before` to `not_after`: at
/// `not_before + r × lifetime` with `r = ratio ± jitter_fraction` (uniform), `r` clamped to
/// `[0, 1]`. `ratio` is clamped to `[0, 1]` and `jitter_fraction` to `[0, 0.5]`.
pub fn refresh_at<R: Rng + ?Sized>(
    not_before: SystemTime,
    not_after: SystemTime,
    ratio: f64,
    jitter_fraction: f64,
    rng: &mut R,
) -> SystemTime {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    let ratio = if ratio.is_finite() {
        ratio.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let jitter = if jitter_fraction.is_finite() {
        jitter_fraction.clamp(0.0, 0.5)
    } else {
        0.0
    };
    let j = if jitter > 0.0 {
        rng.gen_range(-jitter..=jitter)
    } else {
        0.0
    };
    not_before + lifetime.mul_f64((ratio + j).clamp(0.0, 1.0))
}

/// Capped exponential backoff with "equal jitter": attempt `n` waits a uniform time in
/// `[d/2, d]` where `d = min(max, base × 2^n)`.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max: max.max(base),
            attempt: 0,
        }
    }
    pub fn next_delay<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(20));
        self.attempt = self.attempt.saturating_add(1);
        let d = exp.min(self.max);
        let half = d / 2;
        half + half.mul_f64(rng.gen_range(0.0..=1.0))
    }
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// The delay before retrying a failed rotation: the backoff delay, but never more than a third
/// of the current certificate's remaining life (and never less than `floor`), so a CA that
/// comes back is used before the certificate expires.
pub fn retry_delay(
    backoff: Duration,
    floor: Duration,
    not_after: Option<SystemTime>,
    now: SystemTime,
) -> Duration {
    match not_after.and_then(|na| na.duration_since(now).ok()) {
        Some(left) => backoff.min((left / 3).max(floor)),
        None => backoff,
    }
}

/// A freshly issued certificate, already verified by the signing code.
#[derive(Debug)]
pub struct Issued {
    pub svid: Svid,
    /// The roots the CA returned (PEM; each entry may hold several certificates).
    pub roots: Vec<String>,
}

/// Something that obtains a new, verified SVID (fresh key, CSR, CA call, checks).
pub trait SvidSource: Send + Sync + 'static {
    type Error: std::fmt::Display + Send + 'static;
    fn fetch(&self) -> impl Future<Output = Result<Issued, Self::Error>> + Send;
    /// Called after `svid` has been published to SDS (the agent renews with it over mTLS).
    fn published(&self, _svid: &Svid) {}
    /// Called when the served certificate expired before a renewal succeeded.
    fn expired(&self) {}
}

/// Rotation settings.
#[derive(Debug, Clone)]
pub struct RotationConfig {
    /// Fraction of the lifetime after which to renew (default 0.5).
    pub ratio: f64,
    /// ± jitter on the ratio (default 0.05).
    pub jitter: f64,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for RotationConfig {
    fn default() -> Self {
        RotationConfig {
            ratio: 0.5,
            jitter: 0.05,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// Asks the rotation loop to renew now (e.g. an operator request). Triggers coalesce.
#[derive(Debug, Clone)]
pub struct RotationHandle {
    tx: Arc<watch::Sender<u64>>,
}

impl RotationHandle {
    pub fn trigger(&self) {
        self.tx.send_modify(|n| *n += 1);
    }
}

/// The rotation loop.
#[derive(Debug)]
pub struct Rotator<S> {
    source: S,
    store: Arc<SecretStore>,
    bundles: Arc<Mutex<TrustBundles>>,
    metrics: Arc<Metrics>,
    cfg: RotationConfig,
    trigger_tx: Arc<watch::Sender<u64>>,
    trigger: watch::Receiver<u64>,
}

/// The tokio instant at which wall-clock time `t` arrives (now if it is past).
fn instant_of(t: SystemTime) -> Instant {
    Instant::now()
        + t.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
}

impl<S: SvidSource> Rotator<S> {
    pub fn new(
        source: S,
        store: Arc<SecretStore>,
        bundles: Arc<Mutex<TrustBundles>>,
        metrics: Arc<Metrics>,
        cfg: RotationConfig,
    ) -> Rotator<S> {
        let (tx, trigger) = watch::channel(0);
        Rotator {
            source,
            store,
            bundles,
            metrics,
            cfg,
            trigger_tx: Arc::new(tx),
            trigger,
        }
    }

    pub fn handle(&self) -> RotationHandle {
        RotationHandle {
            tx: self.trigger_tx.clone(),
        }
    }

    /// Publishes a new certificate and the CA's roots to SDS. Returns false (and publishes
    /// nothing) if the certificate is not currently valid.
    fn publish(&self, issued: Issued) -> Option<Arc<Svid>> {
        let now = SystemTime::now();
        if now >= issued.svid.not_after() {
            return None;
        }
        let svid = Arc::new(issued.svid);
        let bundles = {
            let mut b = self
                .bundles
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            b.update_ca_roots(&issued.roots, now);
            b.bundles()
        };
        self.store.set_svid_and_bundles(svid.clone(), bundles);
        self.metrics.set_certificate(svid.not_after());
        self.metrics.set_ready(true);
        Some(svid)
    }

    /// Runs until `shutdown` becomes true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut rng = StdRng::from_entropy();
        let mut backoff = Backoff::new(self.cfg.backoff_base, self.cfg.backoff_max);
        // Expiry of the certificate being served, until it is reported.
        let mut expiry: Option<Instant> = None;
        let mut triggers_open = true;
        loop {
            self.trigger.borrow_and_update();
            let requested_at = SystemTime::now();
            let started = Instant::now();
            let result = self.source.fetch().await;
            self.metrics
                .observe_ca_latency(started.elapsed().as_secs_f64());
            // Triggers that came in while the request ran are answered by it.
            self.trigger.borrow_and_update();
            let next = match result.map(|issued| self.publish(issued)) {
                Ok(Some(svid)) => {
                    self.source.published(&svid);
                    backoff.reset();
                    self.metrics.rotation_ok();
                    let at = refresh_at(
                        svid.not_before().max(requested_at),
                        svid.not_after(),
                        self.cfg.ratio,
                        self.cfg.jitter,
                        &mut rng,
                    );
                    info!(
                        spiffe_id = %svid.spiffe_id(), serial = %svid.serial_hex(),
                        not_after = %humantime::format_rfc3339_seconds(svid.not_after()),
                        refresh_at = %humantime::format_rfc3339_seconds(at),
                        "certificate issued and served"
                    );
                    expiry = Some(instant_of(svid.not_after()));
                    instant_of(at)
                }
                failed => {
                    self.metrics.rotation_failed();
                    let delay = retry_delay(
                        backoff.next_delay(&mut rng),
                        self.cfg.backoff_base,
                        self.store.current().svid.map(|s| s.not_after()),
                        SystemTime::now(),
                    );
                    let reason = match failed {
                        Err(e) => e.to_string(),
                        Ok(_) => "the CA returned a certificate that is already expired".to_owned(),
                    };
                    let serving = self
                        .store
                        .current()
                        .svid
                        .filter(|s| s.is_valid_at(SystemTime::now()));
                    warn!(
                        error = %reason, retry_in = ?delay,
                        serving = serving.as_ref().map(|s| s.serial_hex().to_owned()).unwrap_or_else(|| "nothing".into()),
                        "certificate rotation failed; keeping the current certificate while it is valid"
                    );
                    Instant::now() + delay
                }
            };
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(next) => break,
                    changed = self.trigger.changed(), if triggers_open => {
                        if changed.is_ok() { break } else { triggers_open = false }
                    }
                    () = tokio::time::sleep_until(expiry.unwrap_or(next)), if expiry.is_some() => {
                        expiry = None;
                        self.source.expired();
                        self.metrics.cert_expired();
                        self.metrics.set_ready(false);
                        error!("the served certificate has expired and could not be renewed; readiness is false");
                    }
                    () = crate::sds::wait_shutdown(&mut shutdown) => return,
                }
            }
        }
    }
}

/// Keeps bundle files and root retirement current: polls the files every `every` and drops
/// retired roots when their overlap ends; publishes changes to SDS.
pub async fn bundle_watch(
    bundles: Arc<Mutex<TrustBundles>>,
    store: Arc<SecretStore>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (changed, next_expiry) = {
            let mut b = bundles
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let changed = b.reload_files(SystemTime::now()) | b.expire(SystemTime::now());
            (changed.then(|| b.bundles()), b.next_expiry())
        };
        if let Some(map) = changed {
            store.set_bundles(map);
        }
        let wake = next_expiry
            .map(instant_of)
            .map_or(Instant::now() + every, |t| t.min(Instant::now() + every));
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = crate::sds::wait_shutdown(&mut shutdown) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use svidgate_core::{SpiffeId, TrustDomain};
    use zeroize::Zeroizing;

    use super::*;

    const WID: &str = "spiffe://example.org/ns/a/sa/b";

    #[test]
    fn refresh_at_table() {
        let nb = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let na = nb + Duration::from_secs(100);
        let mut rng = StdRng::seed_from_u64(7);
        let s = |d: u64| nb + Duration::from_secs(d);
        for (ratio, want) in [
            (0.5, s(50)),
            (0.8, s(80)),
            (0.0, s(0)),
            (1.0, s(100)),
            (1.7, s(100)),
            (-1.0, s(0)),
            (f64::NAN, s(50)),
        ] {
            assert_eq!(
                refresh_at(nb, na, ratio, 0.0, &mut rng),
                want,
                "ratio {ratio}"
            );
        }
        // Inverted window: renew immediately (at not_before).
        assert_eq!(refresh_at(na, nb, 0.5, 0.0, &mut rng), na);
        // Jitter stays inside ratio ± jitter and actually spreads.
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let t = refresh_at(nb, na, 0.5, 0.1, &mut rng);
            assert!(t >= s(40) && t <= s(60), "{t:?}");
            seen.insert(t);
        }
        assert!(seen.len() > 50);
        // Never after not_after, even with jitter at ratio 1.
        for _ in 0..50 {
            assert!(refresh_at(nb, na, 1.0, 0.5, &mut rng) <= na);
        }
    }

    #[test]
    fn retry_delay_is_capped_near_expiry() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let s = Duration::from_secs;
        let cases = [
            (s(30), Some(now + s(300)), s(30)), // far from expiry: backoff as is
            (s(30), Some(now + s(30)), s(10)),  // a third of the remaining life
            (s(30), Some(now + s(1)), s(1)),    // never below the floor
            (s(30), Some(now - s(5)), s(30)),   // already expired: plain backoff
            (s(30), None, s(30)),               // nothing served yet
            (s(2), Some(now + s(30)), s(2)),
        ];
        for (backoff, na, want) in cases {
            assert_eq!(
                retry_delay(backoff, s(1), na, now),
                want,
                "{backoff:?} {na:?}"
            );
        }
    }

    #[test]
    fn backoff_is_capped_exponential_with_jitter() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        for d in [1u64, 2, 4, 8, 8, 8] {
            let got = b.next_delay(&mut rng);
            let full = Duration::from_secs(d);
            assert!(got >= full / 2 && got <= full, "{got:?} for {d}");
        }
        b.reset();
        assert!(b.next_delay(&mut rng) <= Duration::from_secs(1));
    }

    /// A fake CA: issues self-signed SVIDs with `ttl`, can fail or be slow, and counts calls
    /// and concurrency.
    struct FakeCa {
        ttl: Duration,
        delay: Duration,
        fail: Arc<std::sync::atomic::AtomicBool>,
        calls: Arc<Mutex<Vec<Instant>>>,
        in_flight: Arc<AtomicUsize>,
        max_in_flight: Arc<AtomicUsize>,
        backdate: Duration,
    }

    impl FakeCa {
        fn new(ttl_secs: u64) -> FakeCa {
            FakeCa {
                ttl: Duration::from_secs(ttl_secs),
                delay: Duration::ZERO,
                fail: Arc::default(),
                calls: Arc::default(),
                in_flight: Arc::default(),
                max_in_flight: Arc::default(),
                backdate: Duration::ZERO,
            }
        }
    }

    fn leaf(ttl: Duration, backdate: Duration) -> Svid {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = vec![rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from(WID).unwrap(),
        )];
        // Whole seconds, like real certificates.
        let now = time::OffsetDateTime::from_unix_timestamp(
            time::OffsetDateTime::now_utc().unix_timestamp(),
        )
        .unwrap();
        p.not_before = now - backdate;
        p.not_after = now + ttl;
        let cert = p.self_signed(&key).unwrap();
        Svid::new(
            SpiffeId::parse(WID).unwrap(),
            &[cert.pem()],
            Zeroizing::new(key.serialize_pem()),
        )
        .unwrap()
    }

    impl SvidSource for FakeCa {
        type Error = String;
        async fn fetch(&self) -> Result<Issued, String> {
            let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(n, Ordering::SeqCst);
            self.calls.lock().unwrap().push(Instant::now());
            tokio::time::sleep(self.delay).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                return Err("CA unavailable".into());
            }
            Ok(Issued {
                svid: leaf(self.ttl, self.backdate),
                roots: vec![],
            })
        }
    }

    struct Running {
        store: Arc<SecretStore>,
        metrics: Arc<Metrics>,
        handle: RotationHandle,
        _shutdown: watch::Sender<bool>,
    }

    fn spawn(ca: FakeCa, cfg: RotationConfig) -> Running {
        let store = Arc::new(SecretStore::new());
        let metrics = Arc::new(Metrics::new());
        let bundles = Arc::new(Mutex::new(TrustBundles::new(
            TrustDomain::new("example.org").unwrap(),
            Duration::from_secs(60),
        )));
        let r = Rotator::new(ca, store.clone(), bundles, metrics.clone(), cfg);
        let handle = r.handle();
        let (tx, rx) = watch::channel(false);
        tokio::spawn(r.run(rx));
        Running {
            store,
            metrics,
            handle,
            _shutdown: tx,
        }
    }

    fn no_jitter() -> RotationConfig {
        RotationConfig {
            jitter: 0.0,
            ..RotationConfig::default()
        }
    }

    fn serial(store: &SecretStore) -> String {
        store
            .current()
            .svid
            .map(|s| s.serial_hex().to_owned())
            .unwrap_or_default()
    }

    #[tokio::test(start_paused = true)]
    async fn renews_on_time() {
        let ca = FakeCa::new(100);
        let calls = ca.calls.clone();
        let r = spawn(ca, no_jitter());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(r.metrics.is_ready());
        let first = serial(&r.store);
        tokio::time::sleep(Duration::from_secs(259)).await;
        let calls = calls.lock().unwrap().clone();
        assert!((5..=7).contains(&calls.len()), "{} calls", calls.len());
        for w in calls.windows(2) {
            let gap = w[1] - w[0];
            assert!(
                gap >= Duration::from_secs(48) && gap <= Duration::from_secs(51),
                "gap {gap:?}"
            );
        }
        assert_ne!(serial(&r.store), first);
        assert_eq!(r.metrics.rotations(true), calls.len() as u64);
        assert_eq!(r.metrics.rotations(false), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn backdated_not_before_does_not_cause_a_renewal_loop() {
        // Like `svidgate ca`: not_before = now - 60 s, not_after = now + 10 s.
        let mut ca = FakeCa::new(10);
        ca.backdate = Duration::from_secs(60);
        let calls = ca.calls.clone();
        let r = spawn(ca, no_jitter());
        tokio::time::sleep(Duration::from_secs(21)).await;
        let n = calls.lock().unwrap().len();
        assert!(
            (4..=6).contains(&n),
            "{n} calls in 21 s: renew every ~5 s, not in a loop"
        );
        assert!(r.metrics.is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn failure_keeps_serving_and_backs_off() {
        let ca = FakeCa::new(100);
        let (fail, calls) = (ca.fail.clone(), ca.calls.clone());
        let cfg = RotationConfig {
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(8),
            ..no_jitter()
        };
        let r = spawn(ca, cfg);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let first = serial(&r.store);
        fail.store(true, Ordering::SeqCst);
        // Renewal due at ~50 s fails; retries at +[1,2], +[2,4], +[4,8], +[4,8]...
        tokio::time::sleep(Duration::from_secs(79)).await;
        assert_eq!(
            serial(&r.store),
            first,
            "still serving the valid certificate"
        );
        assert!(r.metrics.is_ready());
        let failed = r.metrics.rotations(false);
        assert!((4..=12).contains(&failed), "{failed} failures in ~30 s");
        let c = calls.lock().unwrap().clone();
        let gaps: Vec<_> = c.windows(2).skip(1).map(|w| w[1] - w[0]).collect();
        assert!(
            gaps.iter()
                .all(|g| *g >= Duration::from_secs(1) && *g <= Duration::from_secs(8)),
            "{gaps:?}"
        );
        assert!(
            gaps.iter().any(|g| *g >= Duration::from_secs(4)),
            "backoff grows: {gaps:?}"
        );
        // CA back: the next retry succeeds.
        fail.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert_ne!(serial(&r.store), first);
        assert_eq!(r.metrics.rotations(true), 2);
        assert_eq!(r.metrics.expired_count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_triggers_one_request_in_flight() {
        let mut ca = FakeCa::new(1000);
        ca.delay = Duration::from_secs(5);
        let (calls, max) = (ca.calls.clone(), ca.max_in_flight.clone());
        let r = spawn(ca, no_jitter());
        tokio::time::sleep(Duration::from_secs(1)).await;
        // During the first (slow) request: a burst of triggers from many tasks.
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let h = r.handle.clone();
            tasks.push(tokio::spawn(async move { h.trigger() }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            calls.lock().unwrap().len(),
            1,
            "answered by the request in flight"
        );
        // While idle: another burst → exactly one more request.
        for _ in 0..20 {
            r.handle.trigger();
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(calls.lock().unwrap().len(), 2);
        assert_eq!(max.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_certificate_turns_readiness_false() {
        let ca = FakeCa::new(10);
        let fail = ca.fail.clone();
        let r = spawn(ca, no_jitter());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(r.metrics.is_ready());
        fail.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(12)).await;
        assert!(!r.metrics.is_ready());
        assert_eq!(r.metrics.expired_count(), 1);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(r.metrics.expired_count(), 1, "counted once per expiry");
        fail.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(31)).await;
        assert!(r.metrics.is_ready(), "a new certificate restores readiness");
    }
}
