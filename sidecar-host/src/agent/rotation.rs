//! Certificate rotation: when to renew (pure functions) and the loop that renews, publishes to
//! SDS and reports health.
//!
//! - Renew at `not_after − ratio × lifetime`, Istio's `SECRET_GRACE_PERIOD_RATIO` (the grace
//!   period before expiry; istio/istio security/pkg/nodeagent/cache/secretcache.go `rotateTime`),
//!   the ratio moved by up to ± `jitter` (`SECRET_GRACE_PERIOD_RATIO_JITTER`) so a fleet started
//!   together does not renew together.
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
//! - After each publish the source is told ([`CertSource::published`]), so the agent renews
//!   over mTLS with its current certificate; when that certificate expires it is told again
//!   ([`CertSource::expired`]) and stops presenting it.
//! - Near expiry the retry delay is capped at a third of the remaining life (at least the
//!   base delay), so a CA that comes back is used before the certificate runs out.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use svidgate_pki::time::fmt_time;
use svidgate_pki::WorkloadCert;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::bundle::TrustBundles;
use super::metrics::Metrics;
use super::sds::SecretStore;
use crate::runtime::{wait_shutdown, Shutdown};

/// Istio's renewal time (`rotateTime` in istio/istio security/pkg/nodeagent/cache/secretcache.go)
/// for a certificate whose lifetime runs from `issued` to `not_after`: the grace period
/// `grace_ratio × lifetime` before `not_after`, `grace_ratio` clamped to `[0, 1]` (NaN: 0.5).
/// Never before `issued`.
pub fn rotate_at(issued: SystemTime, not_after: SystemTime, grace_ratio: f64) -> SystemTime {
    let lifetime = not_after.duration_since(issued).unwrap_or(Duration::ZERO);
    let r = if grace_ratio.is_nan() {
        0.5
    } else {
        grace_ratio.clamp(0.0, 1.0)
    };
    not_after
        .checked_sub(lifetime.mul_f64(r))
        .unwrap_or(issued)
        .max(issued.min(not_after))
}

/// [`rotate_at`] with Istio's jitter: the ratio moved up or down (even odds) by a uniform
/// amount in `[0, jitter)`, `jitter` clamped to `[0, 1]`.
pub fn refresh_at<R: Rng + ?Sized>(
    issued: SystemTime,
    not_after: SystemTime,
    grace_ratio: f64,
    jitter: f64,
    rng: &mut R,
) -> SystemTime {
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let sign = if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
    let j = rng.gen_range(0.0..1.0) * jitter * sign;
    rotate_at(issued, not_after, grace_ratio + j)
}

/// The pause after failed attempt `attempt` (0-based) with capped exponential backoff and
/// "equal jitter": `d = min(max, base × 2^attempt)`, then `d/2 + jitter × d/2` with
/// `jitter ∈ [0, 1]`. Used by the rotation loop and by the CA client's retries.
pub fn backoff_delay(base: Duration, max: Duration, attempt: u32, jitter: f64) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX));
    let half = exp.min(max) / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// [`backoff_delay`] with its attempt counter and random jitter.
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
        let d = backoff_delay(self.base, self.max, self.attempt, rng.gen_range(0.0..=1.0));
        self.attempt = self.attempt.saturating_add(1);
        d
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
    pub cert: WorkloadCert,
    /// The roots the CA returned (PEM; each entry may hold several certificates).
    pub roots: Vec<String>,
}

/// Something that obtains a new, verified certificate (fresh key, CSR, CA call, checks).
pub trait CertSource: Send + Sync + 'static {
    type Error: std::fmt::Display + Send + 'static;
    fn fetch(&self) -> impl Future<Output = Result<Issued, Self::Error>> + Send;
    /// Called after `cert` has been published to SDS (the agent renews with it over mTLS).
    fn published(&self, _cert: &Arc<WorkloadCert>) {}
    /// Called when the served certificate expired before a renewal succeeded.
    fn expired(&self) {}
}

/// Rotation settings.
#[derive(Debug, Clone)]
pub struct RotationConfig {
    /// Grace period before expiry, as a fraction of the lifetime (Istio's default 0.5).
    pub ratio: f64,
    /// Up to ± this on the ratio (Istio's default 0.01).
    pub jitter: f64,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for RotationConfig {
    fn default() -> Self {
        RotationConfig {
            ratio: 0.5,
            jitter: 0.01,
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

impl<S: CertSource> Rotator<S> {
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
    fn publish(&self, issued: Issued) -> Option<Arc<WorkloadCert>> {
        let now = SystemTime::now();
        if now >= issued.cert.not_after() {
            return None;
        }
        let cert = Arc::new(issued.cert);
        let bundles = {
            let mut b = self
                .bundles
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            b.update_ca_roots(&issued.roots, now);
            b.bundles()
        };
        self.store.set_cert_and_bundles(cert.clone(), bundles);
        self.metrics
            .set_certificate(cert.not_before(), cert.not_after());
        self.metrics.set_ready(true);
        Some(cert)
    }

    /// Runs until `shutdown` becomes true.
    pub async fn run(mut self, mut shutdown: Shutdown) {
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
                Ok(Some(cert)) => {
                    self.source.published(&cert);
                    backoff.reset();
                    self.metrics.rotation_ok();
                    // The lifetime counts from when we asked (CAs back-date not_before).
                    let issued = cert.not_before().max(requested_at);
                    let at = refresh_at(
                        issued,
                        cert.not_after(),
                        self.cfg.ratio,
                        self.cfg.jitter,
                        &mut rng,
                    );
                    info!(
                        spiffe_id = %cert.spiffe_id(), serial = %cert.serial(),
                        issued = %fmt_time(issued),
                        not_after = %fmt_time(cert.not_after()),
                        refresh_at = %fmt_time(at),
                        "certificate issued and served"
                    );
                    expiry = Some(instant_of(cert.not_after()));
                    instant_of(at)
                }
                failed => {
                    self.metrics.rotation_failed();
                    let delay = retry_delay(
                        backoff.next_delay(&mut rng),
                        self.cfg.backoff_base,
                        self.store.current().cert.map(|s| s.not_after()),
                        SystemTime::now(),
                    );
                    let reason = match failed {
                        Err(e) => e.to_string(),
                        Ok(_) => "the CA returned a certificate that is already expired".to_owned(),
                    };
                    let serving = self
                        .store
                        .current()
                        .cert
                        .filter(|s| s.is_valid_at(SystemTime::now()));
                    warn!(
                        error = %reason, retry_in = ?delay,
                        serving = serving.as_ref().map(|s| s.serial().to_owned()).unwrap_or_else(|| "nothing".into()),
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
                    () = wait_shutdown(&mut shutdown) => return,
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
    mut shutdown: Shutdown,
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
            () = wait_shutdown(&mut shutdown) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use svidgate_core::TrustDomain;
    use svidgate_pki::testing::TestPki;

    use super::*;

    const WID: &str = "spiffe://example.org/ns/a/sa/b";

    /// Istio's formula, `not_after − ratio × (not_after − issued)`: a 24 h certificate with
    /// ratio 0.2 is renewed 4.8 h before it expires (at 19.2 h), not at 4.8 h.
    #[test]
    fn rotate_at_is_istios_grace_period() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let h = |x: f64| t0 + Duration::from_secs_f64(x * 3600.0);
        let na = h(24.0);
        for (ratio, want) in [
            (0.5, h(12.0)),
            (0.2, h(19.2)),
            (0.8, h(4.8)),
            (0.0, na),
            (1.0, t0),
            (1.7, t0),
            (-1.0, na),
            (f64::NAN, h(12.0)),
        ] {
            let got = rotate_at(t0, na, ratio);
            let diff = got
                .duration_since(want)
                .or_else(|e| Ok::<_, ()>(e.duration()))
                .unwrap();
            assert!(
                diff < Duration::from_millis(1),
                "ratio {ratio}: {got:?} != {want:?}"
            );
        }
        // Issued after not_after (clock trouble): renew at once.
        assert_eq!(rotate_at(na, t0, 0.5), t0);
    }

    #[test]
    fn refresh_at_jitters_like_istio() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let na = t0 + Duration::from_secs(10_000);
        let s = |d: u64| t0 + Duration::from_secs(d);
        let mut rng = StdRng::seed_from_u64(7);
        assert_eq!(refresh_at(t0, na, 0.2, 0.0, &mut rng), s(8_000));
        // Ratio 0.2 ± 0.05: the grace period is 1500..2500 s, both sides seen, spread out.
        let (mut early, mut late) = (0, 0);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..400 {
            let t = refresh_at(t0, na, 0.2, 0.05, &mut rng);
            assert!(t >= s(7_500) && t <= s(8_500), "{t:?}");
            if t < s(8_000) {
                early += 1;
            } else if t > s(8_000) {
                late += 1;
            }
            seen.insert(t);
        }
        assert!(early > 100 && late > 100, "{early} {late}");
        assert!(seen.len() > 300);
        // Clamped: never after not_after, never before issued.
        for _ in 0..50 {
            let t = refresh_at(t0, na, 0.99, 0.5, &mut rng);
            assert!(t >= t0 && t <= na);
            assert!(refresh_at(t0, na, 0.01, 0.5, &mut rng) <= na);
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

    /// A fake CA: issues certificates with `ttl`, can fail or be slow, and counts calls and
    /// concurrency.
    struct FakeCa {
        pki: TestPki,
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
                pki: TestPki::new("fake"),
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

    impl CertSource for FakeCa {
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
                cert: self.pki.cert_with(
                    WID,
                    -(self.backdate.as_secs() as i64),
                    self.ttl.as_secs() as i64,
                ),
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

    /// The loop without jitter, once its first certificate is served (1 s in).
    async fn spawn_ready(ca: FakeCa) -> Running {
        let r = spawn(ca, no_jitter());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(r.metrics.is_ready());
        r
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
            .cert
            .map(|s| s.serial().to_owned())
            .unwrap_or_default()
    }

    #[tokio::test(start_paused = true)]
    async fn renews_on_time() {
        let ca = FakeCa::new(100);
        let calls = ca.calls.clone();
        let r = spawn_ready(ca).await;
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
        let r = spawn_ready(ca).await;
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
