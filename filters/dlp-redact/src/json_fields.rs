//! JSON field mode: the values of named keys are redacted wherever they
//! appear, and every other key, string and number goes through pattern
//! detection.
//!
//! serde_json checks the document first (syntax, UTF-8, nesting depth). A
//! small walker over the checked bytes then finds each key, string and number
//! with its position, so only the redacted spans change and every other byte
//! stays as sent. serde_json reports no positions, and writing its tree back
//! would change the document: a 30-digit integer becomes a float, `1e5`
//! becomes `100000.0`, and the whitespace goes.

use crate::config::JsonFields;
use crate::redact::{Action, Blocker, Pass, Report};
use serde::de::IgnoredAny;
use std::borrow::Cow;

/// Deepest nesting accepted, as serde_json's own limit when it builds values
/// (its check of the syntax alone has none, and the walker recurses).
const MAX_DEPTH: usize = 128;

/// Why a JSON body could not be processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidJson;

/// Redacts a JSON body. `Err` when it is not valid JSON (or nests too deep).
pub fn redact_json(
    body: &[u8],
    fields: &JsonFields,
    pass: &Pass,
    report: &mut Report,
    fields_redacted: &mut u64,
) -> Result<Vec<u8>, InvalidJson> {
    std::str::from_utf8(body).map_err(|_| InvalidJson)?;
    serde_json::from_slice::<IgnoredAny>(body).map_err(|_| InvalidJson)?;
    let mut walker = Walker {
        src: body,
        pos: 0,
        depth: 0,
        edits: Vec::new(),
        fields,
        pass,
        report,
        fields_redacted,
    };
    walker.skip_ws();
    walker.value(true)?;
    splice(body, walker.edits)
}

/// Bytes `start..end` of the document are replaced by `with`.
struct Edit {
    start: usize,
    end: usize,
    with: Vec<u8>,
}

/// A token or value's position: `start..end`.
#[derive(Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
}

struct Walker<'a, 'p> {
    src: &'a [u8],
    pos: usize,
    depth: usize,
    edits: Vec<Edit>,
    fields: &'a JsonFields,
    pass: &'a Pass<'p>,
    report: &'a mut Report,
    fields_redacted: &'a mut u64,
}

impl<'a> Walker<'a, '_> {
    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), InvalidJson> {
        if self.peek() != Some(byte) {
            return Err(InvalidJson);
        }
        self.pos += 1;
        Ok(())
    }

    fn bytes(&self, span: Span) -> Result<&'a [u8], InvalidJson> {
        let src: &'a [u8] = self.src;
        src.get(span.start..span.end).ok_or(InvalidJson)
    }

    /// Walks the value at the current position. With `scan`, its keys,
    /// strings and numbers are redacted; without, it is only stepped over.
    fn value(&mut self, scan: bool) -> Result<Span, InvalidJson> {
        let start = self.pos;
        match self.peek().ok_or(InvalidJson)? {
            b'{' | b'[' => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(InvalidJson);
                }
                if self.peek() == Some(b'{') {
                    self.object(scan)?;
                } else {
                    self.array(scan)?;
                }
                self.depth -= 1;
            }
            b'"' => {
                let span = self.string()?;
                if scan {
                    let text = self.string_text(span)?;
                    self.redact_token(span, text.as_bytes());
                }
            }
            first => {
                while matches!(self.peek(), Some(b) if !matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r'))
                {
                    self.pos += 1;
                }
                let span = Span {
                    start,
                    end: self.pos,
                };
                if scan && (first == b'-' || first.is_ascii_digit()) {
                    let number = self.bytes(span)?;
                    self.redact_token(span, number);
                }
            }
        }
        Ok(Span {
            start,
            end: self.pos,
        })
    }

    fn array(&mut self, scan: bool) -> Result<(), InvalidJson> {
        if self.open(b'[', b']')? {
            return Ok(());
        }
        loop {
            self.value(scan)?;
            if self.after_item(b']')? {
                return Ok(());
            }
        }
    }

    /// Steps over an opening bracket; true when the container is empty
    /// (its closing bracket follows, and is stepped over too).
    fn open(&mut self, open: u8, close: u8) -> Result<bool, InvalidJson> {
        self.expect(open)?;
        self.skip_ws();
        let empty = self.peek() == Some(close);
        if empty {
            self.pos += 1;
        }
        Ok(empty)
    }

    /// After an array item or object member: a comma (false: another one
    /// follows) or the closing bracket (true).
    fn after_item(&mut self, close: u8) -> Result<bool, InvalidJson> {
        self.skip_ws();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                self.skip_ws();
                Ok(false)
            }
            Some(b) if b == close => {
                self.pos += 1;
                Ok(true)
            }
            _ => Err(InvalidJson),
        }
    }

    fn object(&mut self, scan: bool) -> Result<(), InvalidJson> {
        if self.open(b'{', b'}')? {
            return Ok(());
        }
        let mut removals = Removals::default();
        loop {
            let key = self.string()?;
            let name = self.string_text(key)?;
            self.skip_ws();
            self.expect(b':')?;
            self.skip_ws();
            let named = scan && self.fields.keys.iter().any(|k| same_key(k, &name));
            if named {
                // A value the action keeps (alert, block) is still scanned
                // for patterns; one it replaces need not be.
                let keeps = matches!(self.fields.action, Action::Alert | Action::Block);
                let value = self.value(keeps)?;
                *self.fields_redacted += 1;
                if self.redact_field(&name, value)? {
                    removals.remove(key.start, value.end, &mut self.edits);
                } else {
                    removals.keep(key.start, value.end, &mut self.edits);
                }
            } else {
                if scan {
                    self.redact_token(key, name.as_bytes());
                }
                let value = if scan && self.peek() == Some(b'"') {
                    self.string_member_value(&name)?
                } else {
                    self.value(scan)?
                };
                removals.keep(key.start, value.end, &mut self.edits);
            }
            if self.after_item(b'}')? {
                return Ok(());
            }
        }
    }

    /// A string member's value. When the value alone holds nothing, it is
    /// scanned once more together with its key as it reads in compact JSON
    /// (`"key":"value"`), so that a detector that needs the key
    /// (`aws_secret_access_key`) finds the value as in streaming mode.
    fn string_member_value(&mut self, key: &str) -> Result<Span, InvalidJson> {
        let span = self.string()?;
        let value = self.string_text(span)?;
        if let Some(out) = self.pass.redact_value(value.as_bytes(), self.report) {
            self.edits.push(Edit {
                start: span.start,
                end: span.end,
                with: json_string(&out),
            });
            return Ok(span);
        }
        let mut member = Vec::with_capacity(key.len() + value.len() + 5);
        member.push(b'"');
        member.extend_from_slice(key.as_bytes());
        member.extend_from_slice(b"\":\"");
        let prefix = member.len();
        member.extend_from_slice(value.as_bytes());
        member.push(b'"');
        let mut found = Report::default();
        let Some(out) = self.pass.redact_value(&member, &mut found) else {
            return Ok(span);
        };
        // Only a finding that leaves the key and the quotes as they were
        // is the value's (the key's own findings were counted with the key).
        let inner = out
            .get(prefix..out.len().saturating_sub(1))
            .filter(|_| out.get(..prefix) == member.get(..prefix) && out.last() == Some(&b'"'));
        if let Some(inner) = inner.filter(|inner| *inner != value.as_bytes()) {
            self.report.merge(&found);
            self.edits.push(Edit {
                start: span.start,
                end: span.end,
                with: json_string(inner),
            });
        }
        Ok(span)
    }

    /// Applies the field action to a named member's value. True when the
    /// member is to be removed.
    fn redact_field(&mut self, key: &str, value: Span) -> Result<bool, InvalidJson> {
        let action = &self.fields.action;
        match action {
            Action::Remove => return Ok(true),
            Action::Alert => {}
            Action::Block => {
                self.report.block.get_or_insert(Blocker::JsonField);
            }
            _ => {
                let text = if self.peek_at(value.start) == Some(b'"') {
                    self.string_text(value)?
                } else {
                    Cow::Borrowed(std::str::from_utf8(self.bytes(value)?).map_err(|_| InvalidJson)?)
                };
                let mut out = Vec::with_capacity(text.len());
                action.apply(key, text.as_bytes(), self.pass.hash_key, &mut out);
                let with = json_string(&out);
                self.edits.push(Edit {
                    start: value.start,
                    end: value.end,
                    with,
                });
            }
        }
        Ok(false)
    }

    fn peek_at(&self, at: usize) -> Option<u8> {
        self.src.get(at).copied()
    }

    /// Pattern detection on a key, string or number; a changed one becomes
    /// a JSON string.
    fn redact_token(&mut self, span: Span, text: &[u8]) {
        if let Some(out) = self.pass.redact_value(text, self.report) {
            self.edits.push(Edit {
                start: span.start,
                end: span.end,
                with: json_string(&out),
            });
        }
    }

    /// Steps over the string at the current position (quotes included).
    fn string(&mut self) -> Result<Span, InvalidJson> {
        let start = self.pos;
        self.expect(b'"')?;
        loop {
            match self.peek().ok_or(InvalidJson)? {
                b'\\' => self.pos += 2,
                b'"' => {
                    self.pos += 1;
                    return Ok(Span {
                        start,
                        end: self.pos,
                    });
                }
                _ => self.pos += 1,
            }
        }
    }

    /// A string token's contents, unescaped.
    fn string_text(&self, span: Span) -> Result<Cow<'a, str>, InvalidJson> {
        let token = self.bytes(span)?;
        if token.contains(&b'\\') {
            return serde_json::from_slice::<String>(token)
                .map(Cow::Owned)
                .map_err(|_| InvalidJson);
        }
        let inner = token
            .get(1..token.len().saturating_sub(1))
            .ok_or(InvalidJson)?;
        std::str::from_utf8(inner)
            .map(Cow::Borrowed)
            .map_err(|_| InvalidJson)
    }
}

/// Tracks removed members of one object so that the document stays valid:
/// a removed member takes the separator before it with it, and when the
/// first members are removed, the separator before the first kept one goes.
#[derive(Default)]
struct Removals {
    /// End of the previous member, if any.
    previous_end: Option<usize>,
    /// Whether every member so far was removed (and there was one).
    only_removed: bool,
}

impl Removals {
    fn remove(&mut self, start: usize, end: usize, edits: &mut Vec<Edit>) {
        let from = self.previous_end.unwrap_or(start);
        edits.push(Edit {
            start: from,
            end,
            with: Vec::new(),
        });
        self.only_removed = self.previous_end.is_none() || self.only_removed;
        self.previous_end = Some(end);
    }

    fn keep(&mut self, start: usize, end: usize, edits: &mut Vec<Edit>) {
        if let (true, Some(previous_end)) = (self.only_removed, self.previous_end) {
            edits.push(Edit {
                start: previous_end,
                end: start,
                with: Vec::new(),
            });
        }
        self.only_removed = false;
        self.previous_end = Some(end);
    }
}

/// `bytes` as a JSON string (invalid UTF-8 replaced).
fn json_string(bytes: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&String::from_utf8_lossy(bytes)).unwrap_or_else(|_| b"\"\"".to_vec())
}

/// The document with every edit applied. Edits never overlap.
fn splice(src: &[u8], mut edits: Vec<Edit>) -> Result<Vec<u8>, InvalidJson> {
    edits.sort_by_key(|e| e.start);
    let mut out = Vec::with_capacity(src.len());
    let mut at = 0;
    for edit in edits {
        out.extend_from_slice(src.get(at..edit.start).ok_or(InvalidJson)?);
        out.extend_from_slice(&edit.with);
        at = edit.end;
    }
    out.extend_from_slice(src.get(at..).ok_or(InvalidJson)?);
    Ok(out)
}

/// `configured` is lower-cased at configure time.
fn same_key(configured: &str, key: &str) -> bool {
    if key.is_ascii() {
        configured.eq_ignore_ascii_case(key)
    } else {
        configured == key.to_lowercase()
    }
}
