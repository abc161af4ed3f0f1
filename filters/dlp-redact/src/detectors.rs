//! The built-in detector catalog and the validators that keep random numbers
//! from being redacted.
//!
//! Every pattern is written for `regex-automata` in byte mode without
//! Unicode (the scanner compiles with `unicode(false).utf8(false)`), is
//! bounded (its maximum match length is finite, so the streaming scanner
//! knows how much to hold back between chunks), and starts and ends at a word
//! boundary where a partial match would be wrong. The engine has no
//! look-around beyond `\b`/`\B`, so the few context rules that need the byte
//! before or after a match live in [`Validator::accepts_at`] and
//! [`accepts_match`].

use serde::Deserialize;

/// A check run on a pattern's match before it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Validator {
    /// No check: every match counts.
    None,
    /// Luhn checksum over the digits (separators ignored).
    Luhn,
    /// Luhn, 13-19 digits, and a known issuer prefix.
    Card,
    /// US SSN: area not 000, 666 or 900-999; group not 00; serial not 0000.
    UsSsn,
    /// IBAN: a known country length and the ISO 13616 mod-97 check.
    Iban,
}

/// One built-in detector.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// Config name (`detectors.<name>`), metric and tag segment.
    pub name: &'static str,
    /// What it finds, for docs and the schema.
    pub description: &'static str,
    pub pattern: &'static str,
    pub validator: Validator,
    /// Off unless enabled in config (IP addresses).
    pub opt_in: bool,
}

/// The built-in detector named `name`.
pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// In priority order: where two patterns match at the same position, the
/// earlier one wins. Credentials with a distinctive prefix come first, then
/// the checksummed numbers (card before phone, so a grouped card is never
/// taken for a phone number), then the looser personal-data formats, then
/// the opt-in IP addresses.
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "pem_private_key",
        description: "PEM private key block (BEGIN ... PRIVATE KEY ... END), also with JSON-escaped newlines",
        // Body: base64, whitespace, `\` (JSON-escaped newlines) and the
        // characters of RFC 1421 header lines (`Proc-Type: 4,ENCRYPTED`).
        pattern: r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----[A-Za-z0-9+/=\\ \t\r\n:,-]{1,8192}-----END [A-Z0-9 ]{0,40}PRIVATE KEY-----",
        validator: Validator::None,
        opt_in: false,
    },
    Builtin {
        name: "jwt",
        description: "JSON Web Token: three base64url segments, the header starting with eyJ (the signature may be empty)",
        // Header up to 1 KiB, claims up to 6 KiB, signature up to 1 KiB
        // (an RS512 signature with a 4096-bit key is 683 characters).
        pattern: r"\beyJ[A-Za-z0-9_-]{10,1024}\.[A-Za-z0-9_-]{2,6144}\.[A-Za-z0-9_-]{0,1024}",
        validator: Validator::None,
        opt_in: false,
    },
    Builtin {
        name: "bearer_token",
        description: "`Bearer <token>` as in an Authorization header (token68 value of 16+ characters; a JSON escape's backslash, as in `\\/`, counts as one)",
        // The match includes the `Bearer ` prefix (no look-behind); see
        // `value_start`. 16 characters at least, so `bearer of good news`
        // or `Bearer realm="api"` do not count.
        pattern: r"\b(?i:bearer)[ ]{1,8}[A-Za-z0-9._~+/\\-]{16,4096}={0,2}",
        validator: Validator::None,
        opt_in: false,
    },
    Builtin {
        name: "github_token",
        description: "GitHub token: ghp_/gho_/ghu_/ghs_/ghr_ + 36, or github_pat_ + 82",
        pattern: r"\b(?:(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82})\b",
        validator: Validator::None,
        opt_in: false,
    },
    Builtin {
        name: "slack_token",
        description: "Slack token: xoxa-/xoxb-/xoxp-/xoxo-/xoxr-/xoxs- + 10 or more characters",
        pattern: r"\bxox[abpors]-[A-Za-z0-9-]{10,100}",
        validator: Validator::None,
        opt_in: false,
    },
    Builtin {
        name: "stripe_key",
        description: "Stripe API key: sk_/rk_/pk_ + live_/test_ + 10 or more characters",
        pattern: r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,99}\b",
        validator: Validator::None,
        opt_in: false,
    },
    Builtin {
        name: "aws_access_key_id",
        description: "AWS access key id (AKIA, ASIA, ... + 16)",
        pattern: r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b",
        validator: Validator::None,
        opt_in: false,
    },
    Builtin {
        name: "aws_secret_access_key",
        description: "AWS secret access key (40 characters; a JSON-escaped `\\/` counts as `/`) introduced by aws_secret_access_key/secret_access_key/aws_secret and = or :",
        // A bare 40-character base64 string is far too common to count, so
        // the keyword is required. Without look-behind the match covers the
        // whole `keyword = value` (or `keyword": "value`); the secret is its
        // last 40 bytes, see `value_start`.
        pattern: r#"(?i:\b(?:aws_?)?secret_?access_?key|\baws_?secret(?:_?key)?)["']?[ \t]{0,4}(?:=>|=|:)[ \t]{0,4}["']?(?:[A-Za-z0-9+]|\\?/){40}"#,
        validator: Validator::None,
        opt_in: false,
    },
    Builtin {
        name: "card",
        description: "Payment card number: 13-19 digits, plain or in 4-4-4-4(-3), 4-6-5 or 4-6-4 groups of spaces or dashes; Luhn and a known issuer prefix",
        // Only the groupings printed on cards, with one separator kind: a
        // free mix of separators would also swallow the digits after a card
        // (`4111 1111 1111 1111 05 27`) and then fail the checksum.
        pattern: r"\b(?:[0-9]{13,19}|[0-9]{4}(?: [0-9]{4}){3}(?: [0-9]{3})?|[0-9]{4}(?:-[0-9]{4}){3}(?:-[0-9]{3})?|[0-9]{4} [0-9]{6} [0-9]{4,5}|[0-9]{4}-[0-9]{6}-[0-9]{4,5})\b",
        validator: Validator::Card,
        opt_in: false,
    },
    Builtin {
        name: "iban",
        description: "IBAN: a known country code, its exact length, plain or in groups of 4 separated by spaces; mod-97 check",
        // One alternative per IBAN length (generated from IBAN_LENGTHS; a
        // test keeps them in sync), so the grouped form ends exactly where
        // the country's IBAN ends even when an upper-case word follows.
        pattern: concat!(
            r"\b(?:",
            r"(?:NO)[0-9]{2}(?:[A-Z0-9]{11}|(?: [A-Z0-9]{4}){2} [A-Z0-9]{3})",
            r"|(?:BE)[0-9]{2}(?:[A-Z0-9]{12}|(?: [A-Z0-9]{4}){3})",
            r"|(?:DK|FI|FO|GL|NL)[0-9]{2}(?:[A-Z0-9]{14}|(?: [A-Z0-9]{4}){3} [A-Z0-9]{2})",
            r"|(?:MK|SI)[0-9]{2}(?:[A-Z0-9]{15}|(?: [A-Z0-9]{4}){3} [A-Z0-9]{3})",
            r"|(?:AT|BA|EE|KZ|LT|LU|XK)[0-9]{2}(?:[A-Z0-9]{16}|(?: [A-Z0-9]{4}){4})",
            r"|(?:CH|HR|LI|LV)[0-9]{2}(?:[A-Z0-9]{17}|(?: [A-Z0-9]{4}){4} [A-Z0-9]{1})",
            r"|(?:BG|BH|CR|DE|GB|GE|IE|ME|RS|VA)[0-9]{2}(?:[A-Z0-9]{18}|(?: [A-Z0-9]{4}){4} [A-Z0-9]{2})",
            r"|(?:AE|GI|IL|IQ|TL)[0-9]{2}(?:[A-Z0-9]{19}|(?: [A-Z0-9]{4}){4} [A-Z0-9]{3})",
            r"|(?:AD|CZ|ES|MD|PK|RO|SA|SE|SK|TN|VG)[0-9]{2}(?:[A-Z0-9]{20}|(?: [A-Z0-9]{4}){5})",
            r"|(?:PT|ST)[0-9]{2}(?:[A-Z0-9]{21}|(?: [A-Z0-9]{4}){5} [A-Z0-9]{1})",
            r"|(?:IS|TR)[0-9]{2}(?:[A-Z0-9]{22}|(?: [A-Z0-9]{4}){5} [A-Z0-9]{2})",
            r"|(?:FR|GR|IT|MC|MR|SM)[0-9]{2}(?:[A-Z0-9]{23}|(?: [A-Z0-9]{4}){5} [A-Z0-9]{3})",
            r"|(?:AL|AZ|BY|CY|DO|GT|HU|LB|PL|SV)[0-9]{2}(?:[A-Z0-9]{24}|(?: [A-Z0-9]{4}){6})",
            r"|(?:BR|EG|PS|QA|UA)[0-9]{2}(?:[A-Z0-9]{25}|(?: [A-Z0-9]{4}){6} [A-Z0-9]{1})",
            r"|(?:JO|KW|MU)[0-9]{2}(?:[A-Z0-9]{26}|(?: [A-Z0-9]{4}){6} [A-Z0-9]{2})",
            r"|(?:MT|SC)[0-9]{2}(?:[A-Z0-9]{27}|(?: [A-Z0-9]{4}){6} [A-Z0-9]{3})",
            r"|(?:LC)[0-9]{2}(?:[A-Z0-9]{28}|(?: [A-Z0-9]{4}){7})",
            r")\b",
        ),
        validator: Validator::Iban,
        opt_in: false,
    },
    Builtin {
        name: "us_ssn",
        description: "US social security number AAA-GG-SSSS (dashes or spaces); invalid areas, groups and serials refused",
        // Nine bare digits are not matched: every 9-digit id, amount or
        // counter would be a candidate, and the SSN rules reject few of them.
        pattern: r"\b(?:[0-9]{3}-[0-9]{2}-[0-9]{4}|[0-9]{3} [0-9]{2} [0-9]{4})\b",
        validator: Validator::UsSsn,
        opt_in: false,
    },
    Builtin {
        name: "email",
        description: "E-mail address (practical RFC 5321 subset: local part up to 64, domain up to 253, TLD of 2-63 letters)",
        // No `\b` in front: starts only at word boundaries would let the lazy
        // DFA track every subset of the 64 local-part positions (base64
        // text has a boundary at each `+`), thrashing its cache; without it
        // the leftmost start is simply where the run begins. A run longer
        // than 64 is refused in `accepts_match` (its first byte is preceded
        // by another local-part byte).
        pattern: r"[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,63}\b",
        validator: Validator::None,
        opt_in: false,
    },
    Builtin {
        name: "phone",
        description: "Phone number: E.164 (+ and 8-15 digits, single space/dash/dot separators, one parenthesised group) or US/UK national formats",
        // What counts (precision over recall): a number with a leading `+`
        // (not glued to a word, so `...T12:30:45+05:30` is not one); US
        // numbers in (415) 555-2671, 415-555-2671, 415.555.2671 or
        // 415 555 2671 form (one separator kind, NANP area and exchange
        // starting with 2-9); UK 020 7946 0958, 0161 496 0000 and
        // 07700 900123 forms. Bare digit runs, dates, times, versions, UUIDs
        // and ids such as ORD-2024-000123 have none of these shapes.
        pattern: concat!(
            r"\B\+[1-9](?:[0-9]|[ .-][0-9]|[ .-]?\([0-9]{1,4}\)[ .-]?[0-9]){7,20}\b",
            r"|\B\([2-9][0-9]{2}\) ?[2-9][0-9]{2}[-. ][0-9]{4}\b",
            r"|\b(?:1-)?[2-9][0-9]{2}-[2-9][0-9]{2}-[0-9]{4}\b",
            r"|\b(?:1\.)?[2-9][0-9]{2}\.[2-9][0-9]{2}\.[0-9]{4}\b",
            r"|\b(?:1 )?[2-9][0-9]{2} [2-9][0-9]{2} [0-9]{4}\b",
            r"|\b(?:0[1-9][0-9] [0-9]{4} [0-9]{4}|0[1-9][0-9]{2} [0-9]{3} [0-9]{4}|07[0-9]{3} [0-9]{6})\b",
        ),
        validator: Validator::None,
        opt_in: false,
    },
    Builtin {
        name: "ipv4",
        description: "IPv4 address (dotted quad, octets 0-255, not part of a longer dotted number)",
        // The optional fifth part makes `1.2.3.4.5` one match that the
        // validator refuses instead of `1.2.3.4` followed by `.5`.
        pattern: r"\b(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(?:\.[0-9]{1,20})?\b",
        validator: Validator::None,
        opt_in: true,
    },
    Builtin {
        name: "ipv6",
        description: "IPv6 address, full or ::-compressed (no embedded IPv4, no zone)",
        // Leftmost-first takes the first alternative that matches, and `\b`
        // also holds before a `:`, so the compressed forms are ordered by how
        // many groups may follow the `::` (most first); otherwise `1::2:3`
        // would stop at `1::2`. Forms starting with `::` need a non-word
        // byte before them (`\B`), so `std::vector` is not one.
        pattern: concat!(
            r"\b(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}\b",
            r"|\b[0-9A-Fa-f]{1,4}:(?::[0-9A-Fa-f]{1,4}){1,6}\b",
            r"|\b(?:[0-9A-Fa-f]{1,4}:){1,2}(?::[0-9A-Fa-f]{1,4}){1,5}\b",
            r"|\b(?:[0-9A-Fa-f]{1,4}:){1,3}(?::[0-9A-Fa-f]{1,4}){1,4}\b",
            r"|\b(?:[0-9A-Fa-f]{1,4}:){1,4}(?::[0-9A-Fa-f]{1,4}){1,3}\b",
            r"|\b(?:[0-9A-Fa-f]{1,4}:){1,5}(?::[0-9A-Fa-f]{1,4}){1,2}\b",
            r"|\b(?:[0-9A-Fa-f]{1,4}:){1,6}:[0-9A-Fa-f]{1,4}\b",
            r"|\B::(?:[0-9A-Fa-f]{1,4}:){0,6}[0-9A-Fa-f]{1,4}\b",
            r"|\b(?:[0-9A-Fa-f]{1,4}:){1,7}:\B",
        ),
        validator: Validator::None,
        opt_in: true,
    },
];

/// IBAN length per country (ISO 13616 registry: the SEPA countries and the
/// other common ones).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

/// Where the sensitive value starts inside a match of the built-in
/// `detector`: the secret after `aws_secret_access_key = ` and the token
/// after `Bearer `. Redacting only `matched[value_start..]` keeps the key
/// name (and the JSON around it) intact. 0 for every other detector.
pub fn value_start(detector: &str, matched: &[u8]) -> usize {
    match detector {
        // After the separator and an opening quote; the secret may hold
        // JSON-escaped slashes (`\/`), so it can be longer than 40 bytes.
        "aws_secret_access_key" => matched
            .iter()
            .rposition(|&b| matches!(b, b'=' | b':' | b'>'))
            .map_or(0, |sep| {
                let rest = matched.get(sep + 1..).unwrap_or_default();
                sep + 1
                    + rest
                        .iter()
                        .take_while(|&&b| matches!(b, b' ' | b'\t' | b'"' | b'\''))
                        .count()
            }),
        "bearer_token" => matched
            .iter()
            .position(|&b| b == b' ')
            .and_then(|space| {
                matched
                    .iter()
                    .skip(space)
                    .position(|&b| b != b' ')
                    .map(|n| space.saturating_add(n))
            })
            .unwrap_or(0),
        _ => 0,
    }
}

impl Validator {
    /// Whether `matched` (the exact bytes the pattern matched) counts.
    pub fn accepts(self, matched: &[u8]) -> bool {
        match self {
            Validator::None => true,
            Validator::Luhn => {
                let digits = digits(matched);
                digits.len() >= 2 && luhn(&digits)
            }
            Validator::Card => card(matched),
            Validator::UsSsn => us_ssn(matched),
            Validator::Iban => iban(matched),
        }
    }
}

impl Validator {
    /// [`accepts`](Self::accepts) plus the validator's context rules, which
    /// need the bytes around the match `hay[start..end]` (the engine has no
    /// look-behind). At most two bytes before `start` are consulted (the
    /// stream keeps two bytes of context); after `end`, whatever is present.
    ///
    /// - Luhn/card: not the digits of a decimal fraction
    ///   (`0.4111111111111111`, a JSON float: a digit and a dot before) and
    ///   not followed by `.<digit>`. `No.4111111111111111` is a card.
    pub fn accepts_at(self, hay: &[u8], start: usize, end: usize) -> bool {
        let Some(matched) = hay.get(start..end) else {
            return false;
        };
        let before = start.checked_sub(1).and_then(|i| hay.get(i)).copied();
        let before2 = start.checked_sub(2).and_then(|i| hay.get(i)).copied();
        let after = hay.get(end).copied();
        let after2 = end.checked_add(1).and_then(|i| hay.get(i)).copied();
        let context_ok = match self {
            Validator::Card | Validator::Luhn => {
                let digit = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_digit());
                let fraction = before == Some(b'.') && digit(before2);
                let followed_by_fraction = after == Some(b'.') && digit(after2);
                !fraction && !followed_by_fraction
            }
            Validator::None | Validator::UsSsn | Validator::Iban => true,
        };
        context_ok && self.accepts(matched)
    }
}

/// Whether the match `hay[start..end]` of detector `name` counts: its
/// validator ([`Validator::accepts_at`]) plus the rules of single built-ins
/// that no shared validator expresses (a custom detector cannot take a
/// built-in's name, so keying on the name is safe):
///
/// - `email`: local part of at most 64 bytes (not the tail of a longer run)
///   without leading, trailing or doubled dots; domain at most 253 bytes;
/// - `phone`: 8-15 digits after `+` (E.164);
/// - `ipv4`: exactly four parts (the pattern swallows a fifth, so
///   `1.2.3.4.5` is seen whole and refused) and not preceded by a dot (so
///   the retry at `2.3.4.5` is refused too).
///
/// The scanner should call this rather than the validator alone; without it
/// those three rules do not apply.
pub fn accepts_match(
    name: &str,
    validator: Validator,
    hay: &[u8],
    start: usize,
    end: usize,
) -> bool {
    let Some(matched) = hay.get(start..end) else {
        return false;
    };
    let before = start.checked_sub(1).and_then(|i| hay.get(i)).copied();
    let builtin_ok = match name {
        "email" => !before.is_some_and(is_local_part_byte) && email(matched),
        "phone" => phone(matched),
        "ipv4" => before != Some(b'.') && matched.iter().filter(|&&b| b == b'.').count() == 3,
        _ => true,
    };
    builtin_ok && validator.accepts_at(hay, start, end)
}

/// The decimal digits of `s` as values 0-9, everything else skipped.
fn digits(s: &[u8]) -> Vec<u8> {
    s.iter()
        .filter(|b| b.is_ascii_digit())
        .map(|b| b.saturating_sub(b'0'))
        .collect()
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let doubled = d.saturating_mul(2);
                if doubled > 9 {
                    doubled.saturating_sub(9)
                } else {
                    doubled
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

/// The number formed by the first `n` digits (at most 9, so no overflow).
fn prefix(digits: &[u8], n: usize) -> u32 {
    digits.iter().take(n.min(9)).fold(0u32, |acc, &d| {
        acc.saturating_mul(10).saturating_add(u32::from(d))
    })
}

/// Whether the issuer ranges allow a card of `len` digits starting with
/// `digits`.
fn known_issuer(digits: &[u8], len: usize) -> bool {
    let p1 = prefix(digits, 1);
    let p2 = prefix(digits, 2);
    let p3 = prefix(digits, 3);
    let p4 = prefix(digits, 4);
    let visa = p1 == 4 && matches!(len, 13 | 16 | 19);
    let mastercard = ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && len == 16;
    let amex = (p2 == 34 || p2 == 37) && len == 15;
    let discover =
        (p4 == 6011 || (644..=649).contains(&p3) || p2 == 65) && (16..=19).contains(&len);
    let jcb = (3528..=3589).contains(&p4) && (16..=19).contains(&len);
    let diners =
        ((300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39) && (14..=19).contains(&len);
    let unionpay = p2 == 62 && (16..=19).contains(&len);
    // Maestro: 50, 56-58 and the rest of the 6 range not claimed above.
    let maestro = (p2 == 50 || (56..=58).contains(&p2) || p1 == 6) && (13..=19).contains(&len);
    visa || mastercard || amex || discover || jcb || diners || unionpay || maestro
}

fn card(matched: &[u8]) -> bool {
    if !matched
        .iter()
        .all(|&b| b.is_ascii_digit() || b == b' ' || b == b'-')
    {
        return false;
    }
    let digits = digits(matched);
    let len = digits.len();
    (13..=19).contains(&len) && known_issuer(&digits, len) && luhn(&digits)
}

fn us_ssn(matched: &[u8]) -> bool {
    if !matched
        .iter()
        .all(|&b| b.is_ascii_digit() || b == b' ' || b == b'-')
    {
        return false;
    }
    let digits = digits(matched);
    if digits.len() != 9 {
        return false;
    }
    let area = prefix(&digits, 3);
    let group = prefix(digits.get(3..5).unwrap_or_default(), 2);
    let serial = prefix(digits.get(5..9).unwrap_or_default(), 4);
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

fn iban(matched: &[u8]) -> bool {
    let chars: Vec<u8> = matched
        .iter()
        .filter(|&&b| b != b' ')
        .map(u8::to_ascii_uppercase)
        .collect();
    if !chars.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let (Some(country), Some(check)) = (chars.get(..2), chars.get(2..4)) else {
        return false;
    };
    if !check.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let length_ok = IBAN_LENGTHS
        .iter()
        .any(|(code, len)| code.as_slice() == country && *len == chars.len());
    if !length_ok {
        return false;
    }
    // ISO 13616: the first four characters move to the end, letters become
    // 10-35, and the number must be 1 modulo 97.
    let rearranged = chars.iter().skip(4).chain(chars.iter().take(4));
    let remainder = rearranged.fold(0u32, |acc, &b| {
        if b.is_ascii_digit() {
            (acc * 10 + u32::from(b - b'0')) % 97
        } else {
            (acc * 100 + u32::from(b - b'A') + 10) % 97
        }
    });
    remainder == 1
}

fn is_local_part_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn email(matched: &[u8]) -> bool {
    let Some(at) = matched.iter().position(|&b| b == b'@') else {
        return false;
    };
    let local = matched.get(..at).unwrap_or_default();
    let domain = matched.get(at.saturating_add(1)..).unwrap_or_default();
    !local.is_empty()
        && local.len() <= 64
        && local.first() != Some(&b'.')
        && local.last() != Some(&b'.')
        && !local.windows(2).any(|w| w == b"..")
        && !domain.is_empty()
        && domain.len() <= 253
}

fn phone(matched: &[u8]) -> bool {
    // The national patterns fix their digit count; parentheses come in
    // pairs by construction.
    let count = matched.iter().filter(|b| b.is_ascii_digit()).count();
    matched.first() != Some(&b'+') || (8..=15).contains(&count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex_automata::meta::Regex;
    use regex_automata::util::syntax;
    use regex_automata::Input;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Deserialize)]
    struct Corpus {
        positives: Vec<Positive>,
        negatives: Vec<Negative>,
    }

    #[derive(Deserialize)]
    struct Positive {
        detector: String,
        value: String,
        note: String,
    }

    #[derive(Deserialize)]
    struct Negative {
        text: String,
        note: String,
    }

    fn corpus() -> Corpus {
        serde_json::from_str(include_str!("../corpus.json")).unwrap()
    }

    /// All built-ins in one automaton, compiled as the scanner does.
    fn combined() -> Regex {
        let patterns: Vec<&str> = BUILTINS.iter().map(|b| b.pattern).collect();
        Regex::builder()
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .configure(
                Regex::config()
                    .nfa_size_limit(Some(8 << 20))
                    .utf8_empty(false),
            )
            .build_many(&patterns)
            .unwrap()
    }

    fn single(pattern: &str) -> Regex {
        Regex::builder()
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .build(pattern)
            .unwrap()
    }

    /// The first accepted match from `from` on: a match the validator
    /// rejects does not hide one starting inside it (the search resumes one
    /// byte after its start), as in the scanner.
    fn first_accepted(re: &Regex, hay: &[u8], from: usize) -> Option<(&'static str, usize, usize)> {
        first_accepted_with(re, hay, from, true)
    }

    /// With `context` false, only `Validator::accepts_at` decides (what a
    /// scanner that does not call `accepts_match` does).
    fn first_accepted_with(
        re: &Regex,
        hay: &[u8],
        from: usize,
        context: bool,
    ) -> Option<(&'static str, usize, usize)> {
        let mut pos = from;
        while pos <= hay.len() {
            let m = re.search(&Input::new(hay).range(pos..))?;
            let b = &BUILTINS[m.pattern().as_usize()];
            let ok = if context {
                accepts_match(b.name, b.validator, hay, m.start(), m.end())
            } else {
                b.validator.accepts_at(hay, m.start(), m.end())
            };
            if ok {
                return Some((b.name, m.start(), m.end()));
            }
            pos = m.start() + 1;
        }
        None
    }

    fn all_accepted(re: &Regex, hay: &[u8]) -> Vec<(&'static str, usize, usize)> {
        let mut out = Vec::new();
        let mut pos = 0;
        while let Some(found) = first_accepted(re, hay, pos) {
            out.push(found);
            pos = found.2.max(found.1 + 1);
        }
        out
    }

    #[test]
    fn the_catalog_has_the_contract_names_in_priority_order() {
        let names: Vec<&str> = BUILTINS.iter().map(|b| b.name).collect();
        assert_eq!(
            names,
            [
                "pem_private_key",
                "jwt",
                "bearer_token",
                "github_token",
                "slack_token",
                "stripe_key",
                "aws_access_key_id",
                "aws_secret_access_key",
                "card",
                "iban",
                "us_ssn",
                "email",
                "phone",
                "ipv4",
                "ipv6",
            ]
        );
        let opt_in: Vec<&str> = BUILTINS
            .iter()
            .filter(|b| b.opt_in)
            .map(|b| b.name)
            .collect();
        assert_eq!(opt_in, ["ipv4", "ipv6"]);
        assert_eq!(builtin("card").unwrap().validator, Validator::Card);
        assert_eq!(builtin("iban").unwrap().validator, Validator::Iban);
        assert_eq!(builtin("us_ssn").unwrap().validator, Validator::UsSsn);
        assert!(builtin("credit_card").is_none());
        assert!(BUILTINS.iter().all(|b| !b.description.is_empty()));
    }

    #[test]
    fn every_pattern_is_bounded_and_never_empty() {
        let mut longest = 0;
        for b in BUILTINS {
            let hir = regex_syntax::ParserBuilder::new()
                .unicode(false)
                .utf8(false)
                .build()
                .parse(b.pattern)
                .unwrap_or_else(|e| panic!("{}: {e}", b.name));
            let props = hir.properties();
            let max = props.maximum_len();
            let min = props.minimum_len().unwrap_or(0);
            println!("{:<24} min {:>3} max {:?}", b.name, min, max);
            assert!(
                matches!(max, Some(n) if n <= 10_000),
                "{}: max {max:?}",
                b.name
            );
            assert!(min > 0, "{} can match the empty string", b.name);
            longest = longest.max(max.unwrap());
        }
        // The PEM block sets the streaming window; nothing else comes close.
        assert_eq!(longest, builtin_max_len("pem_private_key"));
    }

    fn builtin_max_len(name: &str) -> usize {
        regex_syntax::ParserBuilder::new()
            .unicode(false)
            .utf8(false)
            .build()
            .parse(builtin(name).unwrap().pattern)
            .unwrap()
            .properties()
            .maximum_len()
            .unwrap()
    }

    #[test]
    fn the_combined_automaton_compiles_within_the_scanner_limit() {
        let re = combined();
        assert_eq!(re.pattern_len(), BUILTINS.len());
    }

    #[test]
    fn the_corpus_covers_every_detector() {
        let c = corpus();
        let mut per: BTreeMap<&str, usize> = BUILTINS.iter().map(|b| (b.name, 0)).collect();
        for p in &c.positives {
            *per.get_mut(p.detector.as_str())
                .unwrap_or_else(|| panic!("unknown detector {}", p.detector)) += 1;
            assert!(!p.note.is_empty());
        }
        println!(
            "positives {} per detector {per:?}; negatives {}",
            c.positives.len(),
            c.negatives.len()
        );
        for (name, n) in per {
            assert!(n >= 6, "{name}: only {n} positives");
        }
        assert!(c.negatives.len() >= 60);
        assert!(c.negatives.iter().all(|n| !n.note.is_empty()));
    }

    #[test]
    fn every_positive_is_found_whole_by_its_detector_in_every_context() {
        let re = combined();
        let mut failures = Vec::new();
        let mut checked = 0;
        for p in corpus().positives {
            let contexts = [
                ("before ", " after"),
                ("", ""),
                ("", " after"),
                ("before ", ""),
                ("{\"k\":\"", "\"}"),
            ];
            for (pre, post) in contexts {
                let hay = format!("{pre}{}{post}", p.value);
                let want = (p.detector.as_str(), pre.len(), pre.len() + p.value.len());
                let got = first_accepted(&re, hay.as_bytes(), 0);
                if got != Some(want) {
                    let shown = got.map(|(d, s, e)| (d, &hay[s..e]));
                    failures.push(format!(
                        "{:?} ({}): got {shown:?}, want {}",
                        hay, p.note, p.detector
                    ));
                }
                checked += 1;
            }
        }
        println!("{checked} positive contexts checked");
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn no_negative_matches_any_detector() {
        let re = combined();
        let mut failures = Vec::new();
        for n in corpus().negatives {
            for hay in [n.text.clone(), format!("{{\"k\":\"{}\"}}", n.text)] {
                if let Some((d, s, e)) = first_accepted(&re, hay.as_bytes(), 0) {
                    failures.push(format!(
                        "{hay:?} ({}): {d} matched {:?}",
                        n.note,
                        &hay[s..e]
                    ));
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn a_document_with_every_positive_yields_each_once_in_order() {
        let re = combined();
        let c = corpus();
        let doc = c
            .positives
            .iter()
            .map(|p| p.value.as_str())
            .collect::<Vec<_>>()
            .join(" | ");
        let found: Vec<(&str, &str)> = all_accepted(&re, doc.as_bytes())
            .into_iter()
            .map(|(d, s, e)| (d, &doc[s..e]))
            .collect();
        let want: Vec<(&str, &str)> = c
            .positives
            .iter()
            .map(|p| (p.detector.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(found, want);
    }

    #[test]
    fn digits_inside_longer_runs_are_not_cards() {
        let re = combined();
        for hay in [
            "x41111111111111111",
            "41111111111111111111",
            "a4111111111111111",
            "4111111111111111b",
            "_4111111111111111",
        ] {
            assert_eq!(first_accepted(&re, hay.as_bytes(), 0), None, "{hay}");
        }
        // A card followed by a short number in the same group style keeps
        // its 16 digits.
        let hay = "4111 1111 1111 1111 05 2027";
        assert_eq!(
            first_accepted(&re, hay.as_bytes(), 0),
            Some(("card", 0, 19))
        );
    }

    #[test]
    fn the_iban_pattern_has_one_exact_length_per_country() {
        let re = single(builtin("iban").unwrap().pattern);
        for (country, len) in IBAN_LENGTHS {
            let country = std::str::from_utf8(*country).unwrap();
            let plain = valid_iban(country, *len);
            let grouped = plain
                .as_bytes()
                .chunks(4)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect::<Vec<_>>()
                .join(" ");
            for form in [&plain, &grouped] {
                let m = re.find(form.as_bytes()).unwrap_or_else(|| panic!("{form}"));
                assert_eq!(m.range(), 0..form.len(), "{form}");
                assert!(Validator::Iban.accepts(form.as_bytes()), "{form}");
            }
            // One character more or less is not this country's IBAN.
            let longer = format!("{plain}0");
            assert!(re.find(longer.as_bytes()).is_none(), "{longer}");
            let shorter = &plain[..plain.len() - 1];
            assert!(!Validator::Iban.accepts(shorter.as_bytes()), "{shorter}");
        }
    }

    /// A synthetic IBAN of `len` characters with correct check digits.
    fn valid_iban(country: &str, len: usize) -> String {
        let bban: String = (0..len - 4)
            .map(|i| char::from(b'0' + (i % 10) as u8))
            .collect();
        for check in 2..=98 {
            let candidate = format!("{country}{check:02}{bban}");
            if Validator::Iban.accepts(candidate.as_bytes()) {
                return candidate;
            }
        }
        panic!("no check digits for {country}");
    }

    #[test]
    fn luhn_and_card_validators() {
        for ok in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "4222222222222",
            "4111111111111111110",
            "5555555555554444",
            "2223003122003222",
            "2720990000000007",
            "378282246310005",
            "6011111111111117",
            "6445644564456445",
            "6500000000000002",
            "30569309025904",
            "36700102000000",
            "3530111333300000",
            "6200000000000005",
            "5018000000000009",
        ] {
            assert!(Validator::Card.accepts(ok.as_bytes()), "{ok}");
            assert!(Validator::Luhn.accepts(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "4111111111111112",    // Luhn
            "1234567812345670",    // Luhn-valid, no issuer
            "37828224631000",      // Amex prefix, 14 digits
            "411111111111111",     // Visa, 15 digits
            "2220990000000008",    // below the Mastercard 2-series
            "2721000000000004",    // above it
            "5555555555554444000", // Mastercard, 19 digits
            "0000000000000000",    // Luhn-valid zeros
            "4111x1111111111111",  // not a separator
            "411111111111",        // 12 digits
            "",
        ] {
            assert!(!Validator::Card.accepts(bad.as_bytes()), "{bad}");
        }
        assert!(Validator::Luhn.accepts(b"79927398713"));
        assert!(!Validator::Luhn.accepts(b"79927398710"));
        assert!(!Validator::Luhn.accepts(b"0"));
        assert!(!Validator::Luhn.accepts(b""));
    }

    #[test]
    fn card_context_rejects_decimal_fractions() {
        let at = |hay: &[u8], start, end| Validator::Card.accepts_at(hay, start, end);
        assert!(!at(b"0.4111111111111111", 2, 18));
        assert!(!at(b"4111111111111111.25", 0, 16));
        // A full stop ending a sentence is not a fraction.
        assert!(at(b"card 4111111111111111.", 5, 21));
        assert!(at(b"4111111111111111", 0, 16));
        assert!(!at(b"4111", 0, 99));
        // Custom Luhn detectors get the same rule.
        assert!(!Validator::Luhn.accepts_at(b"0.79927398713", 2, 13));
        assert!(Validator::Luhn.accepts_at(b"n 79927398713", 2, 13));
    }

    #[test]
    fn us_ssn_validator() {
        for ok in [
            "123-45-6789",
            "001-01-0001",
            "899-99-9999",
            "665-12-3456",
            "667-12-3456",
            "123 45 6789",
        ] {
            assert!(Validator::UsSsn.accepts(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "999-99-9999",
            "123-00-4567",
            "123-45-0000",
            "123-45-678",
            "123-45-67890",
            "12a-45-6789",
            "",
        ] {
            assert!(!Validator::UsSsn.accepts(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn iban_validator() {
        for ok in [
            "GB82WEST12345698765432",
            "GB82 WEST 1234 5698 7654 32",
            "gb82west12345698765432",
            "DE89370400440532013000",
            "NO9386011117947",
            "FR1420041010050500013M02606",
        ] {
            assert!(Validator::Iban.accepts(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "GB82WEST12345698765433",  // mod-97
            "GB00WEST12345698765432",  // check digits
            "XX82WEST12345698765432",  // unknown country
            "DE8937040044053201300",   // 21 characters for DE
            "DE893704004405320130000", // 23
            "GB82-WEST-1234-5698-7654-32",
            "GBAB WEST 1234 5698 7654 32",
            "GB8",
            "",
        ] {
            assert!(!Validator::Iban.accepts(bad.as_bytes()), "{bad}");
        }
    }

    fn whole(name: &str, s: &str) -> bool {
        accepts_match(
            name,
            builtin(name).unwrap().validator,
            s.as_bytes(),
            0,
            s.len(),
        )
    }

    #[test]
    fn email_rules() {
        assert!(whole("email", "bob@example.com"));
        assert!(whole("email", "a.b@example.com"));
        for bad in [
            ".bob@example.com",
            "bob.@example.com",
            "a..b@example.com",
            "bob@",
            "@example.com",
            "bob",
        ] {
            assert!(!whole("email", bad), "{bad}");
        }
        let label = "a".repeat(63);
        let domain_253 = format!("{label}.{label}.{label}.{}.com", "a".repeat(57));
        assert_eq!(domain_253.len(), 253);
        assert!(whole("email", &format!("x@{domain_253}")));
        assert!(!whole("email", &format!("x@a{domain_253}")));
        let local_65 = "a".repeat(65);
        assert!(!whole("email", &format!("{local_65}@example.com")));
        // The pattern never takes more than 64 local-part characters.
        let re = combined();
        let hay = format!("{local_65}@example.com");
        assert_eq!(first_accepted(&re, hay.as_bytes(), 0), None);
    }

    #[test]
    fn phone_rules() {
        for ok in [
            "+14155552671",
            "+1 (415) 555-2671",
            "+12345678",
            "+123456789012345",
            "415-555-2671",
            "1-800-555-0199",
        ] {
            assert!(whole("phone", ok), "{ok}");
        }
        for bad in ["+1234567", "+1234567890123456", "+1 23 45 67"] {
            assert!(!whole("phone", bad), "{bad}");
        }
        // Parentheses come in pairs by construction.
        let re = single(builtin("phone").unwrap().pattern);
        for hay in [
            "+1 (415 555 2671",
            "+1 415) 555 2671",
            "(415 555-2671",
            "415) 555-2671",
        ] {
            let found = re.find(hay.as_bytes()).map(|m| &hay[m.range()]);
            assert!(
                found.is_none_or(|f| !f.contains('(') && !f.contains(')')),
                "{hay}: {found:?}"
            );
        }
    }

    #[test]
    fn ipv4_rules_and_context() {
        assert!(whole("ipv4", "1.2.3.4"));
        assert!(!whole("ipv4", "1.2.3.4.5"));
        assert!(!accepts_match("ipv4", Validator::None, b"1.2.3.4.5", 2, 9));
        assert!(accepts_match(
            "ipv4",
            Validator::None,
            b"ip 1.2.3.4.",
            3,
            10
        ));
        let re = combined();
        for hay in [
            "1.2.3.4.5",
            "1.2.3.4.5.6.7.8",
            "x 1.2.3.4.5000 y",
            ".1.2.3.4",
        ] {
            assert_eq!(first_accepted(&re, hay.as_bytes(), 0), None, "{hay}");
        }
        assert_eq!(
            first_accepted(&re, b"host 10.0.0.1.", 0),
            Some(("ipv4", 5, 13))
        );
    }

    #[test]
    fn ipv6_compressed_forms_are_taken_whole() {
        let re = single(builtin("ipv6").unwrap().pattern);
        for addr in [
            "1::2:3:4:5:6:7",
            "1:2::3:4:5:6",
            "1:2:3::4:5",
            "1:2:3:4:5::6",
            "1:2:3:4:5:6::7",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:8",
        ] {
            let hay = format!("[{addr}]");
            let m = re.find(hay.as_bytes()).unwrap_or_else(|| panic!("{addr}"));
            assert_eq!(&hay[m.range()], addr);
        }
        for not in ["12:30:45", "std::vector", "a:b", "Foo::Bar"] {
            assert!(re.find(not.as_bytes()).is_none(), "{not}");
        }
    }

    /// What changes while the scanner calls `Validator::accepts_at` instead
    /// of `accepts_match`: only these negatives would match.
    #[test]
    fn without_context_rules_only_the_known_negatives_match() {
        let re = combined();
        let mut matched: Vec<String> = corpus()
            .negatives
            .into_iter()
            .filter_map(|n| {
                first_accepted_with(&re, n.text.as_bytes(), 0, false)
                    .map(|(d, s, e)| format!("{d}: {}", &n.text[s..e]))
            })
            .collect();
        matched.sort();
        println!("{matched:#?}");
        assert_eq!(matched, ["ipv4: 1.2.3.4.5", "phone: +1234567890123456"]);
    }

    #[test]
    fn value_start_points_at_the_secret() {
        let m = b"aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let start = value_start("aws_secret_access_key", m);
        assert_eq!(&m[start..], b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
        let m = b"Bearer  FAKEtokenFAKEtoken";
        assert_eq!(&m[value_start("bearer_token", m)..], b"FAKEtokenFAKEtoken");
        assert_eq!(value_start("card", b"4111111111111111"), 0);
        assert_eq!(value_start("bearer_token", b"Bearer"), 0);
    }

    /// Throughput of the combined automaton over 1 MiB of JSON with about
    /// one match per 2 KiB. Run with
    /// `cargo test --release -p dlp-redact --lib detectors -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn throughput_of_the_combined_automaton() {
        let re = combined();
        let values = [
            "4111 1111 1111 1111",
            "bob@example.com",
            "+1 415 555 2671",
            "GB82 WEST 1234 5698 7654 32",
            "123-45-6789",
            "AKIAIOSFODNN7EXAMPLE",
        ];
        let mut doc = String::from("[");
        let mut i = 0usize;
        while doc.len() < (1 << 20) {
            doc.push_str(&format!(
                "{{\"id\":{i},\"uuid\":\"123e4567-e89b-12d3-a456-{i:012}\",\"created\":\"2024-05-01T12:30:45.123Z\",\"price\":{}.{:02},\"name\":\"Item number {i} in the catalogue\",\"tags\":[\"alpha\",\"beta\",\"gamma\"],\"description\":\"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. Version 1.2.3 build 20240501.\"",
                i % 1000,
                i % 100
            ));
            if i % 6 == 0 {
                doc.push_str(&format!(
                    ",\"contact\":\"{}\"",
                    values[(i / 6) % values.len()]
                ));
            }
            doc.push_str("},");
            i += 1;
        }
        doc.push_str("{}]");
        let accepted = measure("JSON records, ~1 match per 2 KiB", &re, doc.as_bytes());
        assert!(accepted > 400);

        // Adversarial shapes: one long base64 value (an upload inside JSON),
        // and numbers everywhere (CSV of ids, dates and amounts).
        let mut b64 = String::from("{\"file\":\"");
        let mut x: u32 = 12345;
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        while b64.len() < (1 << 20) {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            b64.push(char::from(alphabet[(x >> 16) as usize % 64]));
        }
        b64.push_str("\"}");
        measure("one 1 MiB base64 string", &re, b64.as_bytes());
        // Each pattern alone, for comparison: the combined automaton is far
        // slower on base64 than any of them, because the lazy DFA's states
        // are the product of the patterns' counters (the e-mail local part
        // above all) and its cache thrashes.
        for b in BUILTINS {
            let one = single(b.pattern);
            let t = std::time::Instant::now();
            let n = one.find_iter(b64.as_bytes()).count();
            let secs = t.elapsed().as_secs_f64();
            println!(
                "  base64, {} alone: {n} matches, {:.0} MB/s",
                b.name,
                b64.len() as f64 / 1e6 / secs
            );
        }

        let mut csv = String::new();
        let mut i = 0u64;
        while csv.len() < (1 << 20) {
            csv.push_str(&format!(
                "{i},{},2024-05-{:02} 12:{:02}:{:02},{}.{:02},ORD-2024-{:06}\n",
                1_714_567_890_123u64 + i * 7919,
                i % 28 + 1,
                i % 60,
                (i * 7) % 60,
                i % 10_000,
                i % 100,
                i
            ));
            i += 1;
        }
        measure(
            "1 MiB CSV of ids, epoch ms, dates, amounts",
            &re,
            csv.as_bytes(),
        );
    }

    fn measure(label: &str, re: &Regex, hay: &[u8]) -> usize {
        let mb = hay.len() as f64 / 1e6;
        let accepted = all_accepted(re, hay).len();
        let rounds = 10;
        let t = std::time::Instant::now();
        let mut raw = 0;
        for _ in 0..rounds {
            raw += re.find_iter(hay).count();
        }
        let raw_s = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        for _ in 0..rounds {
            assert_eq!(all_accepted(re, hay).len(), accepted);
        }
        let validated_s = t.elapsed().as_secs_f64();
        println!(
            "{label}: {} bytes, {} raw matches, {accepted} accepted; find_iter {:.0} MB/s, find + validators (scanner loop) {:.0} MB/s",
            hay.len(),
            raw / rounds,
            mb * rounds as f64 / raw_s,
            mb * rounds as f64 / validated_s
        );
        accepted
    }
}
