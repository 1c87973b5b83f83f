//! Seeded generator of labelled samples with exact byte spans, for tests, the quality
//! measurement (`examples/quality.rs`) and benchmarks.
//!
//! Each sample is a short text with zero or more embedded values and the span and type
//! of each. Positives cover every PII type and the common secret types in varied
//! formats and contexts; hard negatives (UUIDs, hashes, versions, dates, order numbers,
//! placeholder keys, code) carry no label and must stay unflagged.

pub(crate) mod more;
mod values;

/// A small deterministic PRNG (SplitMix64): the same seed gives the same corpus on every
/// machine and every version of the dependencies.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// `n` characters drawn from `alphabet` (ASCII).
    pub fn string(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n).map(|_| char::from(self.pick(alphabet))).collect()
    }
}

/// The expected finding: type and byte span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub kind: &'static str,
    pub start: usize,
    pub end: usize,
}

/// A text and the findings it must produce.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub text: String,
    pub labels: Vec<Label>,
}

impl Sample {
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    fn value(&mut self, kind: &'static str, v: &str) {
        let start = self.text.len();
        self.text.push_str(v);
        self.labels.push(Label {
            kind,
            start,
            end: self.text.len(),
        });
    }
}

/// Every type the generator labels.
pub fn kinds() -> Vec<&'static str> {
    let mut v = vec![
        "email",
        "phone",
        "credit_card",
        "iban",
        "us_ssn",
        "ipv4",
        "ipv6",
        "password",
        "generic_secret",
        "aws_secret_access_key",
        "url_password",
        "authorization_header",
        "azure_storage_key",
    ];
    v.extend(values::TOKEN_KINDS);
    v.extend(more::TOKEN_KINDS);
    v
}

const LEADS: &[&str] = &[
    "Please use ",
    "FYI: ",
    "Here it is -> ",
    "my value is ",
    "Contact: ",
    "see ",
    "(",
    "\"",
    "Ticket says ",
    "- ",
    "",
];
const TAILS: &[&str] = &[
    " for the deploy.",
    " thanks!",
    ")",
    "\"",
    ", ok?",
    " and nothing else",
    ".",
    "\n",
    "",
    " — merci",
];

fn pii_value(r: &mut Rng, kind: &str) -> String {
    match kind {
        "email" => values::email(r),
        "phone" if r.chance(0.5) => more::phone(r),
        "phone" => values::phone(r),
        "credit_card" => values::credit_card(r),
        "iban" => values::iban(r),
        "us_ssn" => values::ssn(r),
        "ipv4" => values::ipv4(r),
        _ => values::ipv6(r),
    }
}

/// One value in context: a sentence, an assignment, a config line or a URL.
fn positive(r: &mut Rng, s: &mut Sample) {
    let kinds = kinds();
    let kind = r.pick(&kinds);
    match kind {
        "email" | "phone" | "credit_card" | "iban" | "us_ssn" | "ipv4" | "ipv6" => {
            let v = pii_value(r, kind);
            s.push(r.pick(LEADS));
            s.value(kind, &v);
            s.push(r.pick(TAILS));
        }
        "password" => {
            let key = r.pick(&[
                "password",
                "DB_PASSWORD",
                "\"passwd\"",
                "userPassword",
                "PGPASSWORD",
            ]);
            let op = r.pick(&[" = ", "=", ": ", " := "]);
            let q = r.pick(&["\"", "'", ""]);
            s.push(&format!("{key}{op}{q}"));
            s.value("password", &values::password(r));
            s.push(&format!("{q}\n"));
        }
        "generic_secret" => {
            let key = r.pick(&[
                "api_secret",
                "CLIENT_SECRET",
                "\"auth_token\"",
                "x-api-key",
                "signingKey",
            ]);
            s.push(&format!("{key}: "));
            let v = format!("{}{}", r.string(values::ALNUM, 28), r.below(90) + 10);
            s.value("generic_secret", &v);
            s.push("\n");
        }
        "aws_secret_access_key" => {
            let (lead, tail) = r.pick(&[
                ("aws_secret_access_key = ", "\n"),
                ("AWS_SECRET_ACCESS_KEY=", " "),
                ("\"SecretAccessKey\": \"", "\"\n"),
            ]);
            s.push(lead);
            let v = values::secret(r, kind);
            s.value(kind, &v);
            s.push(tail);
        }
        "url_password" => {
            let scheme = r.pick(&[
                "postgres",
                "postgresql",
                "mysql",
                "mongodb+srv",
                "redis",
                "amqps",
                "https",
            ]);
            s.push(&format!(
                "{scheme}://{}:",
                r.pick(&["admin", "app_user", "svc"])
            ));
            let pw = format!(
                "{}{}",
                r.string(values::ALNUM, 12),
                r.pick(&["!", "%21", "9"])
            );
            s.value(kind, &pw);
            s.push(&format!(
                "@db{}.internal.example.com:5432/prod ",
                r.below(9)
            ));
        }
        "authorization_header" => {
            s.push(r.pick(&[
                "Authorization: Basic ",
                "-H 'Authorization: Token ",
                "authorization: Bearer ",
            ]));
            let n = 24 + r.below(20) as usize;
            let v = values::b64(r, n);
            s.value(kind, &v);
            s.push("'\n");
        }
        "azure_storage_key" => {
            s.push("DefaultEndpointsProtocol=https;AccountName=store1;AccountKey=");
            let v = values::secret(r, kind);
            s.value(kind, &v);
            s.push(";EndpointSuffix=core.windows.net ");
        }
        _ => {
            let v = secret(r, kind);
            s.push(r.pick(&[
                "token: ",
                "Use ",
                "export KEY=",
                "key \"",
                "`",
                "value=",
                "\n",
            ]));
            s.value(kind, &v);
            s.push(r.pick(&[" now", "\"", "`", "\n", " ;", ""]));
        }
    }
}

/// Text that looks like a finding and is not one.
fn negative(r: &mut Rng, s: &mut Sample) {
    if r.chance(0.3) {
        s.push(&more::negative(r));
        return;
    }
    let hex40 = r.string(values::HEX, 40);
    let t = match r.below(22) {
        0 => format!(
            "request id {}-{}-4{}-a{}-{}",
            r.string(values::HEX, 8),
            r.string(values::HEX, 4),
            r.string(values::HEX, 3),
            r.string(values::HEX, 3),
            r.string(values::HEX, 12)
        ),
        1 => format!("commit {hex40} fixed it"),
        2 => format!(
            "sha256:{}{}",
            r.string(values::HEX, 32),
            r.string(values::HEX, 32)
        ),
        3 => format!(
            "upgrade to v{}.{}.{} or {}.{}.{}.{}",
            r.below(9),
            r.below(30),
            r.below(99),
            r.below(9),
            r.below(9),
            r.below(9),
            r.below(9)
        ),
        4 => format!(
            "on 2024-{:02}-{:02} at 10:{:02}",
            1 + r.below(12),
            1 + r.below(28),
            r.below(60)
        ),
        5 => format!(
            "due {:02}/{:02}/2023 or {:02}.{:02}.2024",
            1 + r.below(12),
            1 + r.below(28),
            1 + r.below(28),
            1 + r.below(12)
        ),
        6 => format!("Order #{} shipped", 100_000 + r.below(900_000)),
        7 => format!(
            "invoice INV-2023-{:05} total 1,234.{:02} EUR",
            r.below(99999),
            r.below(100)
        ),
        8 => "api_key = \"<your-api-key>\" and token: ${GITHUB_TOKEN}".to_string(),
        9 => "OPENAI_API_KEY=sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx".to_string(),
        10 => "aws_access_key_id = AKIAXXXXXXXXXXXXXXXX # replace".to_string(),
        11 => "password: changeme   # default, your_api_key_here".to_string(),
        12 => format!("card 4111 1111 1111 111{} is invalid", 2 + r.below(8)),
        13 => format!(
            "ssn 000-{:02}-{:04} and 666-12-3456",
            1 + r.below(98),
            1 + r.below(9998)
        ),
        14 => format!(
            "population 10 000 000 and 3.14159, {} items",
            r.below(10_000)
        ),
        15 => "let password = read_password()?; let token = lexer.next_token();".to_string(),
        16 => "token: Token::Ident, secret: &'static str, api_key: String".to_string(),
        17 => "ping @maintainers or user@localhost, see @types/node".to_string(),
        18 => "listen on 127.0.0.1:8080 and 0.0.0.0, mask 255.255.255.0".to_string(),
        19 => format!(
            "ISBN 978-3-16-{}-0, part no. 12-34-56",
            100_000 + r.below(899_999)
        ),
        20 => "use std::io; fn main() { let x = a::b(c); }".to_string(),
        _ => format!(
            "page {} of {}, chapter {}.{}",
            r.below(400),
            400 + r.below(100),
            r.below(30),
            r.below(30)
        ),
    };
    s.push(&t);
}

/// `n` samples from `seed`: about two thirds positives (some with two values), a third
/// hard negatives.
pub fn generate(seed: u64, n: usize) -> Vec<Sample> {
    let mut r = Rng::new(seed);
    (0..n)
        .map(|_| {
            let mut s = Sample::default();
            match r.below(7) {
                0 | 1 => negative(&mut r, &mut s),
                6 => more::contextual(&mut r, &mut s),
                2 => {
                    positive(&mut r, &mut s);
                    s.push(" and ");
                    positive(&mut r, &mut s);
                }
                3 => {
                    negative(&mut r, &mut s);
                    s.push(" ");
                    positive(&mut r, &mut s);
                }
                _ => positive(&mut r, &mut s),
            }
            s
        })
        .collect()
}

/// A fake value of one type (for tests that embed values themselves).
pub fn value(r: &mut Rng, kind: &str) -> String {
    match kind {
        "email" | "phone" | "credit_card" | "iban" | "us_ssn" | "ipv4" | "ipv6" => {
            pii_value(r, kind)
        }
        _ => secret(r, kind),
    }
}

/// A secret value of `kind`: the added families and key forms from `more`.
fn secret(r: &mut Rng, kind: &str) -> String {
    if more::TOKEN_KINDS.contains(&kind) || kind == "private_key" && r.chance(0.5) {
        more::token(r, kind)
    } else {
        values::secret(r, kind)
    }
}

/// The types [`value`] can produce.
pub fn value_kinds() -> Vec<&'static str> {
    let mut v = vec![
        "email",
        "phone",
        "credit_card",
        "iban",
        "us_ssn",
        "ipv4",
        "ipv6",
    ];
    v.extend(values::TOKEN_KINDS);
    v.extend(more::TOKEN_KINDS);
    v
}
