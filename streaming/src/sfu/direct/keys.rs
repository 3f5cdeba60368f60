//! One peer connection's DTLS-SRTP keying material, seen as its DTLS layer derives it.
//!
//! webrtc 0.21.1 keeps the SRTP contexts it derives after the handshake to itself, and
//! the direct send path needs the local one. The crate does let each peer connection
//! bring its own crypto provider, and the DTLS exporter (RFC 5705, label
//! `EXTRACTOR-dtls_srtp`, RFC 5764 section 4.2) computes the keying material as the TLS
//! 1.2 PRF: a chain of HMAC calls through that provider. [`KeyCapture`] delegates every
//! operation to the real provider and keeps the PRF's output blocks for that one label,
//! so the SFU can build the same local SRTP context the crate built.
//!
//! The material is a secret: it is held in memory like the crate's own copy, never
//! logged, and dropped with the peer connection.

use std::sync::{Arc, Mutex};

use rtc::crypto::{
    ActiveKeyExchange, AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, CbcAlgorithm, CbcCipher,
    CryptoAlgorithm, CryptoError, HashAlgorithm, HmacAlgorithm, KeyExchangeAlgorithm, Mac,
    PublicKey, RTCCrypto, RTCCryptoProvider, RTCRandom, SignatureScheme, SigningKey, StreamCipher,
    StreamCipherAlgorithm,
};

/// RFC 5764's exporter label for DTLS-SRTP.
const LABEL: &[u8] = b"EXTRACTOR-dtls_srtp";

/// A crypto provider that remembers the DTLS-SRTP exporter's output (see the module docs).
pub(crate) struct KeyCapture {
    inner: Arc<dyn RTCCryptoProvider>,
    crypto: CapturingCrypto,
}

struct CapturingCrypto {
    inner: Arc<dyn RTCCryptoProvider>,
    blocks: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl KeyCapture {
    pub(crate) fn new(inner: Arc<dyn RTCCryptoProvider>) -> Self {
        Self {
            crypto: CapturingCrypto {
                inner: Arc::clone(&inner),
                blocks: Arc::default(),
            },
            inner,
        }
    }

    /// The provider the capture delegates to (for the SFU's own SRTP context).
    pub(crate) fn inner(&self) -> &Arc<dyn RTCCryptoProvider> {
        &self.inner
    }

    /// The last `len` bytes of keying material the exporter produced, if it ran.
    ///
    /// A P_hash output of `len` bytes is the first `len` bytes of its
    /// `ceil(len / block)` blocks; the blocks of the most recent export are the last ones
    /// kept (a second handshake would append its own).
    pub(crate) fn keying_material(&self, len: usize) -> Option<Vec<u8>> {
        let blocks = self
            .crypto
            .blocks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let block = blocks.last()?.len();
        if block == 0 {
            return None;
        }
        let count = len.div_ceil(block);
        let first = blocks.len().checked_sub(count)?;
        let mut material: Vec<u8> = blocks[first..].concat();
        material.truncate(len);
        Some(material)
    }
}

impl RTCCryptoProvider for KeyCapture {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn crypto(&self) -> &dyn RTCCrypto {
        &self.crypto
    }

    fn random(&self) -> &dyn RTCRandom {
        self.inner.random()
    }
}

impl RTCCrypto for CapturingCrypto {
    fn supports(&self, algorithm: CryptoAlgorithm) -> bool {
        self.inner.crypto().supports(algorithm)
    }

    fn hash(&self, algorithm: HashAlgorithm, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.inner.crypto().hash(algorithm, data)
    }

    fn block_encrypt(
        &self,
        algorithm: BlockCipherAlgorithm,
        key: &[u8],
        block: &mut [u8],
    ) -> Result<(), CryptoError> {
        self.inner.crypto().block_encrypt(algorithm, key, block)
    }

    fn new_hmac(&self, algorithm: HmacAlgorithm, key: &[u8]) -> Result<Box<dyn Mac>, CryptoError> {
        let inner = self.inner.crypto().new_hmac(algorithm, key)?;
        Ok(Box::new(CapturingMac {
            inner,
            blocks: Arc::clone(&self.blocks),
        }))
    }

    fn new_stream_cipher(
        &self,
        algorithm: StreamCipherAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn StreamCipher>, CryptoError> {
        self.inner.crypto().new_stream_cipher(algorithm, key)
    }

    fn new_aead(
        &self,
        algorithm: AeadAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn AeadCipher>, CryptoError> {
        self.inner.crypto().new_aead(algorithm, key)
    }

    fn new_cbc(
        &self,
        algorithm: CbcAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn CbcCipher>, CryptoError> {
        self.inner.crypto().new_cbc(algorithm, key)
    }

    fn start_key_exchange(
        &self,
        algorithm: KeyExchangeAlgorithm,
    ) -> Result<Box<dyn ActiveKeyExchange>, CryptoError> {
        self.inner.crypto().start_key_exchange(algorithm)
    }

    fn generate_signing_key(
        &self,
        scheme: SignatureScheme,
    ) -> Result<Arc<dyn SigningKey>, CryptoError> {
        self.inner.crypto().generate_signing_key(scheme)
    }

    fn import_signing_key(
        &self,
        scheme: SignatureScheme,
        pkcs8_der: &[u8],
    ) -> Result<Arc<dyn SigningKey>, CryptoError> {
        self.inner.crypto().import_signing_key(scheme, pkcs8_der)
    }

    fn verify_signature(
        &self,
        scheme: SignatureScheme,
        public_key: PublicKey<'_>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        self.inner
            .crypto()
            .verify_signature(scheme, public_key, message, signature)
    }
}

struct CapturingMac {
    inner: Box<dyn Mac>,
    blocks: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Mac for CapturingMac {
    fn output_len(&self) -> usize {
        self.inner.output_len()
    }

    fn sign(&mut self, input: &[&[u8]], output: &mut [u8]) -> Result<(), CryptoError> {
        self.inner.sign(input, output)?;
        if is_exporter_output_block(input) {
            self.blocks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(output.to_vec());
        }
        Ok(())
    }

    fn verify(&mut self, input: &[&[u8]], expected: &[u8]) -> Result<(), CryptoError> {
        self.inner.verify(input, expected)
    }
}

/// Whether an HMAC over `input` yields one output block of the exporter's P_hash.
///
/// P_hash (RFC 5246 section 5) alternates `A(i) = HMAC(secret, A(i-1))`, with
/// `A(0) = seed`, and output blocks `HMAC(secret, A(i) + seed)`; the seed starts with the
/// label. Only the output blocks have the seed as a second part.
fn is_exporter_output_block(input: &[&[u8]]) -> bool {
    matches!(input, [_, seed] if seed.starts_with(LABEL))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The TLS 1.2 PRF as RFC 5246 writes it, through a provider's HMAC.
    fn p_hash(crypto: &dyn RTCCrypto, secret: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
        let mut a = seed.to_vec();
        let mut out = Vec::new();
        while out.len() < len {
            let mut block = vec![0; 32];
            let mut mac = crypto.new_hmac(HmacAlgorithm::Sha256, secret).unwrap();
            mac.sign(&[&a], &mut block).unwrap();
            a = block.clone();
            let mut mac = crypto.new_hmac(HmacAlgorithm::Sha256, secret).unwrap();
            mac.sign(&[&a, seed], &mut block).unwrap();
            out.extend_from_slice(&block);
        }
        out.truncate(len);
        out
    }

    fn seed(label: &[u8]) -> Vec<u8> {
        let mut seed = label.to_vec();
        seed.extend_from_slice(&[7; 64]);
        seed
    }

    #[test]
    fn captures_exactly_the_exporter_output() {
        let provider = rtc::crypto::default_provider().unwrap();
        let capture = KeyCapture::new(Arc::clone(&provider));
        assert_eq!(capture.keying_material(60), None);
        // The handshake's own PRF runs (master secret, finished) use other labels.
        p_hash(capture.crypto(), b"pre-master", &seed(b"master secret"), 48);
        let expected = p_hash(provider.crypto(), b"master", &seed(LABEL), 60);
        let captured = p_hash(capture.crypto(), b"master", &seed(LABEL), 60);
        assert_eq!(captured, expected);
        assert_eq!(capture.keying_material(60), Some(expected));
    }

    #[test]
    fn a_second_export_replaces_the_first() {
        let provider = rtc::crypto::default_provider().unwrap();
        let capture = KeyCapture::new(Arc::clone(&provider));
        p_hash(capture.crypto(), b"first", &seed(LABEL), 56);
        let second = p_hash(capture.crypto(), b"second", &seed(LABEL), 56);
        assert_eq!(capture.keying_material(56), Some(second));
    }

    #[test]
    fn other_hmacs_are_not_kept() {
        let capture = KeyCapture::new(rtc::crypto::default_provider().unwrap());
        let mut mac = capture
            .crypto()
            .new_hmac(HmacAlgorithm::Sha256, b"stun key")
            .unwrap();
        let mut out = vec![0; 32];
        mac.sign(&[b"message", b"more"], &mut out).unwrap();
        mac.sign(&[&seed(LABEL)], &mut out).unwrap();
        assert_eq!(capture.keying_material(32), None);
    }
}
