//! Small text helpers every layer uses: identifiers usable as SQL names, the first line of a
//! message, a content fingerprint, hex, and random keys.

/// Lower-case letters, digits and `_`, not starting with a digit: usable unquoted as a table,
/// column or parameter name.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The first line of a (possibly multi-line) message.
pub fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).to_string()
}

/// Bytes as lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `n` random bytes from the operating system, as hex: tokens, salts and keys that cannot be
/// guessed or counted through.
pub fn random_hex(n: usize) -> Result<String, String> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| format!("no randomness from the operating system: {e}"))?;
    Ok(hex(&b))
}

/// FNV-1a 64-bit, hex: a content fingerprint (not a security hash).
pub fn fnv1a(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
