//! Test certificates (feature `testing`): one root, one intermediate, and workload
//! certificates signed by the intermediate — what every test of the agent, the CA and the
//! rotation loop needs, built one way.

use pki_types::CertificateDer;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};

use crate::cert::WorkloadCert;
use crate::key::{KeyType, WorkloadKey};

/// Parameters of a CA certificate named `cn` (keyCertSign, cRLSign, no path length limit).
pub fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

/// Parameters of an X509-SVID leaf for `id`, valid from `nb` to `na` seconds from now.
pub fn leaf_params(id: &str, nb: i64, na: i64) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.subject_alt_names = vec![SanType::URI(id.try_into().expect("URI SAN"))];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    // Whole seconds, like real certificates.
    let now =
        time::OffsetDateTime::from_unix_timestamp(time::OffsetDateTime::now_utc().unix_timestamp())
            .expect("now");
    p.not_before = now + time::Duration::seconds(nb);
    p.not_after = now + time::Duration::seconds(na);
    p.use_authority_key_identifier_extension = true;
    p
}

/// A root and an intermediate CA (ECDSA P-256).
pub struct TestPki {
    pub root: CertifiedIssuer<'static, KeyPair>,
    pub inter: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki").finish_non_exhaustive()
    }
}

impl TestPki {
    /// A fresh PKI; `name` goes into the CAs' common names.
    pub fn new(name: &str) -> TestPki {
        let root = CertifiedIssuer::self_signed(
            ca_params(&format!("{name} root")),
            KeyPair::generate().expect("key"),
        )
        .expect("root");
        let inter = CertifiedIssuer::signed_by(
            ca_params(&format!("{name} intermediate")),
            KeyPair::generate().expect("key"),
            &root,
        )
        .expect("intermediate");
        TestPki { root, inter }
    }

    pub fn root_pem(&self) -> String {
        self.root.pem()
    }

    pub fn root_der(&self) -> CertificateDer<'static> {
        self.root.der().clone()
    }

    /// A leaf for `id` and `key`, valid from `nb` to `na` seconds from now, as PEM.
    pub fn leaf_pem(&self, id: &str, key: &impl PublicKeyData, nb: i64, na: i64) -> String {
        leaf_params(id, nb, na)
            .signed_by(key, &self.inter)
            .expect("leaf")
            .pem()
    }

    /// What a CA answers: leaf, intermediate, root (PEM, one per element).
    pub fn answer(&self, leaf_pem: String) -> Vec<String> {
        vec![leaf_pem, self.inter.pem(), self.root.pem()]
    }

    /// A workload certificate for `id` with a fresh P-256 key, valid from `nb` to `na`
    /// seconds from now.
    pub fn cert_with(&self, id: &str, nb: i64, na: i64) -> WorkloadCert {
        let key = WorkloadKey::generate(KeyType::EcdsaP256).expect("key");
        let leaf = leaf_params(id, nb, na)
            .signed_by(key.rcgen_key_pair(), &self.inter)
            .expect("leaf");
        WorkloadCert::new(
            &key,
            vec![leaf.der().clone(), self.inter.der().clone()],
            self.root_der(),
        )
        .expect("a valid workload certificate")
    }

    /// A workload certificate for `id`, valid from a second ago for `secs` seconds.
    pub fn cert(&self, id: &str, secs: i64) -> WorkloadCert {
        self.cert_with(id, -1, secs)
    }
}

/// `count` mutants of `der` (seeded): 1 to 3 bit flips, one in ten also truncated; never
/// `der` itself. For "never panics, never accepts" tests of parsers.
pub fn mutants(der: &[u8], seed: u64, count: usize) -> Vec<Vec<u8>> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let mut m = der.to_vec();
        for _ in 0..rng.gen_range(1..4) {
            let i = rng.gen_range(0..m.len());
            m[i] ^= 1 << rng.gen_range(0..8);
        }
        if rng.gen_bool(0.1) {
            m.truncate(rng.gen_range(0..m.len()));
        }
        if m != der {
            out.push(m);
        }
    }
    out
}
