//! Deterministic fixtures for the dlp-redact bench: JSON API responses (a
//! page of order records with their customers) of an exact size, with the
//! sensitive values such responses leak at a realistic density.
//!
//! Every order has a customer with a name, an e-mail address, a phone number
//! and a postal address, plus ids, UUIDs, timestamps, SKUs and prices (digit
//! runs a card or phone pattern must not take). About one payment in six
//! carries a full card number (Luhn-valid test numbers of known issuers,
//! plain, in groups of 4 with spaces or with dashes), about one customer in
//! 30 a US SSN, about one order in 150 a JWT in a debug field and about one
//! in 400 an AWS access key id in a note. The first records always carry
//! [`SENTINEL_CARDS`], so checks can look for fixed values.
//!
//! The files are generated, not committed (`bench/fixtures/.gitignore`):
//! the bench and the config tests call [`write_dlp_fixtures`] before any
//! Envoy loads a config that serves them.

use std::path::PathBuf;

/// (path relative to the repo root, exact size in bytes, PRNG seed).
pub const DLP_FIXTURES: &[(&str, usize, u64)] = &[
    ("bench/fixtures/dlp-1m.json", 1 << 20, 0x0d1f_0001),
    ("bench/fixtures/dlp-64k.json", 64 << 10, 0x0d1f_0064),
];

/// Card numbers every fixture contains, as written there (the first records
/// carry them), so a check can assert that a response lacks them.
pub const SENTINEL_CARDS: &[&str] = &[
    "4111 1111 1111 1111",
    "5555-5555-5555-4444",
    "378282246310005",
    "6011111111111117",
];

/// Writes every fixture of [`DLP_FIXTURES`] unless the file already holds
/// exactly its bytes. Concurrent callers (parallel tests) are safe: each
/// writes a temporary file and renames it into place.
pub fn write_dlp_fixtures(root: &std::path::Path) -> Vec<PathBuf> {
    DLP_FIXTURES
        .iter()
        .map(|&(rel, size, seed)| {
            let path = root.join(rel);
            let bytes = generate(size, seed);
            if std::fs::read(&path).ok().as_deref() != Some(bytes.as_slice()) {
                let dir = path.parent().expect("fixture path has a directory");
                std::fs::create_dir_all(dir)
                    .unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
                let tmp = dir.join(format!(
                    ".{}.{}.tmp",
                    path.file_name().unwrap().to_string_lossy(),
                    std::process::id()
                ));
                std::fs::write(&tmp, &bytes)
                    .unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
                std::fs::rename(&tmp, &path)
                    .unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
            }
            path
        })
        .collect()
}

/// splitmix64: small, fast and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    /// True with probability 1/n.
    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }

    fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b"0123456789abcdef"[self.below(16) as usize]))
            .collect()
    }

    fn chars_of(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| char::from(alphabet[self.below(alphabet.len() as u64) as usize]))
            .collect()
    }
}

const FIRST: &[&str] = &[
    "Maria", "James", "Wei", "Aisha", "Lukas", "Sofia", "Noah", "Priya", "Mateo", "Emma", "Yuki",
    "Olivia", "Ahmed", "Chloe", "Diego", "Hannah",
];
const LAST: &[&str] = &[
    "Garcia", "Smith", "Chen", "Khan", "Müller", "Rossi", "Johnson", "Patel", "Lopez", "Brown",
    "Tanaka", "Williams", "Hassan", "Martin", "Silva", "O'Neill",
];
const STREETS: &[&str] = &[
    "Oak Ave",
    "Main St",
    "Maple Dr",
    "Cedar Ln",
    "Elm St",
    "Park Blvd",
    "Lake Rd",
    "Hill St",
];
const CITIES: &[(&str, &str, &str)] = &[
    ("Portland", "OR", "972"),
    ("Austin", "TX", "787"),
    ("Springfield", "IL", "627"),
    ("Denver", "CO", "802"),
    ("Boston", "MA", "021"),
    ("Seattle", "WA", "981"),
];
const DOMAINS: &[&str] = &[
    "example.com",
    "example.org",
    "mail.example.net",
    "shop.example",
];
const PRODUCTS: &[&str] = &[
    "Wireless Mouse",
    "USB-C Cable 2m",
    "Mechanical Keyboard",
    "27\\\" Monitor",
    "Laptop Stand",
    "Noise-Cancelling Headphones",
    "Webcam 1080p",
    "Desk Lamp",
];
const STATUSES: &[&str] = &["pending", "paid", "shipped", "delivered", "refunded"];
const NOTES: &[&str] = &[
    "Leave at the front door",
    "Gift wrap please, no invoice in the box",
    "Customer asked for delivery after 5pm",
    "",
    "",
    "",
];

/// Issuer prefixes and lengths of the generated card numbers.
const ISSUERS: &[(&str, &str, usize)] = &[
    ("visa", "4", 16),
    ("mastercard", "51", 16),
    ("mastercard", "55", 16),
    ("amex", "34", 15),
    ("amex", "37", 15),
    ("discover", "6011", 16),
];

/// Appends the Luhn check digit to `body`.
pub fn with_luhn(body: &str) -> String {
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

/// A Luhn-valid number of a known issuer and its brand.
fn card_number(rng: &mut Rng) -> (&'static str, String) {
    let (brand, prefix, len) = ISSUERS[rng.below(ISSUERS.len() as u64) as usize];
    let body = format!("{prefix}{}", rng.digits(len - 1 - prefix.len()));
    (brand, with_luhn(&body))
}

/// The brand of a sentinel card number, by its first digit.
fn brand_of(number: &str) -> &'static str {
    match number.as_bytes().first() {
        Some(b'4') => "visa",
        Some(b'5') => "mastercard",
        Some(b'3') => "amex",
        _ => "discover",
    }
}

/// Plain, in groups with spaces, or in groups with dashes (Amex 4-6-5).
fn format_card(rng: &mut Rng, digits: &str) -> String {
    let sep = match rng.below(10) {
        0..=5 => return digits.to_owned(),
        6..=8 => " ",
        _ => "-",
    };
    let groups: &[usize] = if digits.len() == 15 {
        &[4, 6, 5]
    } else {
        &[4, 4, 4, 4]
    };
    let mut out = Vec::new();
    let mut at = 0;
    for g in groups {
        out.push(&digits[at..at + g]);
        at += g;
    }
    out.join(sep)
}

fn phone(rng: &mut Rng) -> String {
    let (area, ex, line) = (
        format!("{}{}", 2 + rng.below(8), rng.digits(2)),
        "555".to_owned(),
        format!("01{}", rng.digits(2)),
    );
    match rng.below(4) {
        0 => format!("+1-{area}-{ex}-{line}"),
        1 => format!("({area}) {ex}-{line}"),
        2 => format!("{area}.{ex}.{line}"),
        _ => format!("+1{area}{ex}{line}"),
    }
}

fn ssn(rng: &mut Rng) -> String {
    // Area 001-665 (never 000, 666 or 9xx), group 01-99, serial 0001-9999.
    format!(
        "{:03}-{:02}-{:04}",
        1 + rng.below(665),
        1 + rng.below(99),
        1 + rng.below(9999)
    )
}

fn jwt(rng: &mut Rng) -> String {
    const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    format!(
        "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJ{}.{}",
        rng.chars_of(B64URL, 90),
        rng.chars_of(B64URL, 86)
    )
}

fn aws_key_id(rng: &mut Rng) -> String {
    format!(
        "AKIA{}",
        rng.chars_of(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
    )
}

fn uuid(rng: &mut Rng) -> String {
    format!(
        "{}-{}-4{}-{}{}-{}",
        rng.hex(8),
        rng.hex(4),
        rng.hex(3),
        rng.pick(&["8", "9", "a", "b"]),
        rng.hex(3),
        rng.hex(12)
    )
}

fn timestamp(rng: &mut Rng) -> String {
    format!(
        "2024-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        1 + rng.below(12),
        1 + rng.below(28),
        rng.below(24),
        rng.below(60),
        rng.below(60),
        rng.below(1000)
    )
}

fn cents(c: u64) -> String {
    format!("{}.{:02}", c / 100, c % 100)
}

/// One order record (JSON object, compact).
fn record(rng: &mut Rng, n: usize) -> String {
    let (first, last) = (rng.pick(FIRST), rng.pick(LAST));
    let (city, state, zip3) = CITIES[rng.below(CITIES.len() as u64) as usize];
    let local = format!(
        "{}.{}{}",
        first.to_lowercase(),
        last.to_lowercase().replace(['ü', '\''], "u"),
        rng.below(100)
    );
    let email = format!("{local}@{}", rng.pick(DOMAINS));
    let ssn_field = if rng.one_in(30) {
        format!(r#","tax_id":"{}""#, ssn(rng))
    } else {
        String::new()
    };

    let item_count = 1 + rng.below(3);
    let mut subtotal = 0;
    let items: Vec<String> = (0..item_count)
        .map(|_| {
            let qty = 1 + rng.below(4);
            let price = 199 + rng.below(40_000);
            subtotal += qty * price;
            format!(
                r#"{{"sku":"SKU-{}","name":"{}","quantity":{qty},"unit_price":{}}}"#,
                rng.digits(6),
                rng.pick(PRODUCTS),
                cents(price)
            )
        })
        .collect();
    let tax = subtotal * 8 / 100;

    // The first records carry the sentinels; later, one payment in six.
    let card = match SENTINEL_CARDS.get(n) {
        Some(s) => Some((brand_of(s), (*s).to_owned())),
        None if rng.one_in(6) => {
            let (brand, digits) = card_number(rng);
            Some((brand, format_card(rng, &digits)))
        }
        None => None,
    };
    let payment = match card {
        Some((brand, number)) => format!(
            r#"{{"method":"card","brand":"{brand}","card_number":"{number}","exp":"{:02}/{}"}}"#,
            1 + rng.below(12),
            26 + rng.below(5)
        ),
        None => format!(
            r#"{{"method":"card","brand":"visa","last4":"{}","exp":"{:02}/{}"}}"#,
            rng.digits(4),
            1 + rng.below(12),
            26 + rng.below(5)
        ),
    };
    let mut note = rng.pick(NOTES).to_owned();
    if rng.one_in(400) {
        note = format!("temporary key {} rotated", aws_key_id(rng));
    }
    let debug = if rng.one_in(150) {
        format!(r#","debug":{{"session_token":"{}"}}"#, jwt(rng))
    } else {
        String::new()
    };

    format!(
        concat!(
            r#"{{"id":"ord_{id}","uuid":"{uuid}","status":"{status}","created_at":"{created}","#,
            r#""updated_at":"{updated}","customer":{{"id":"cus_{cus}","name":"{first} {last}","#,
            r#""email":"{email}","phone":"{phone}"{ssn},"address":{{"line1":"{num} {street}","#,
            r#""city":"{city}","state":"{state}","postal_code":"{zip3}{zip2}","country":"US"}}}},"#,
            r#""items":[{items}],"subtotal":{subtotal},"tax":{tax},"total":{total},"#,
            r#""currency":"USD","payment":{payment},"note":"{note}"{debug}}}"#
        ),
        id = rng.digits(10),
        uuid = uuid(rng),
        status = rng.pick(STATUSES),
        created = timestamp(rng),
        updated = timestamp(rng),
        cus = rng.digits(8),
        first = first,
        last = last,
        email = email,
        phone = phone(rng),
        ssn = ssn_field,
        num = 1 + rng.below(9999),
        street = rng.pick(STREETS),
        city = city,
        state = state,
        zip3 = zip3,
        zip2 = rng.digits(2),
        items = items.join(","),
        subtotal = cents(subtotal),
        tax = cents(tax),
        total = cents(subtotal + tax),
        payment = payment,
        note = note,
        debug = debug,
    )
}

/// A JSON document of exactly `size` bytes: `{"object":"list","data":[...]}`
/// with as many records as fit, padded with spaces (JSON whitespace) before
/// the closing bracket. Panics if `size` cannot hold the sentinel records.
pub fn generate(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let head = r#"{"object":"list","data":["#;
    let tail = "],\"has_more\":true,\"next_cursor\":\"c_end\"}\n";
    let mut out = String::with_capacity(size);
    out.push_str(head);
    let mut n = 0;
    loop {
        let rec = record(&mut rng, n);
        let sep = usize::from(n > 0);
        if out.len() + sep + rec.len() + tail.len() > size {
            break;
        }
        if sep == 1 {
            out.push(',');
        }
        out.push_str(&rec);
        n += 1;
    }
    assert!(
        n >= SENTINEL_CARDS.len(),
        "{size} bytes hold only {n} records"
    );
    let pad = size - out.len() - tail.len();
    out.extend(std::iter::repeat_n(' ', pad));
    out.push_str(tail);
    out.into_bytes()
}
