//! Label and field selectors for list and watch.
//!
//! This module owns:
//! - the `labelSelector` query syntax (`a=b`, `a!=b`, `a in (x,y)`, `a notin (x)`,
//!   `a`, `!a`, `a>1`, `a<1`), metav1.LabelSelector JSON objects and map-form
//!   selectors (`Service.spec.selector`), with matching and a canonical string form;
//! - the `fieldSelector` query syntax (`k=v`, `k==v`, `k!=v`, with `\,` `\=` `\\`
//!   escapes), field support checks and matching against JSON objects;
//! - the Kubernetes label key/value validation rules, exported for reuse.
//!
//! Syntax and error texts follow k8s.io/apimachinery. Part of the shared model: the
//! API, controllers and agents use it; it calls nothing else in skiff.

use std::borrow::Cow;
use std::fmt;

use serde_json::{Map, Value};

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a selector could not be parsed or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A label selector string that is not a comma-separated list of requirements.
    #[error("{0}")]
    Syntax(String),
    /// One requirement of a label selector string is malformed or invalid.
    #[error("unable to parse requirement: {0}")]
    Requirement(String),
    /// A metav1.LabelSelector object that is malformed or invalid.
    #[error("{0}")]
    InvalidLabelSelector(String),
    /// A field selector term without a usable field and operator.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    FieldTerm { selector: String, term: String },
    /// A backslash in a field selector value not followed by `\`, `,` or `=`.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    FieldEscape(String),
    /// A `,` or `=` in a field selector value that should have been escaped.
    #[error("invalid field selector: unescaped character in value: '{0}'")]
    FieldUnescaped(char),
    /// A field selector names a field the resource does not support.
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

// ---------------------------------------------------------------------------
// Label key / value validation
// ---------------------------------------------------------------------------

const QUALIFIED_NAME_MAX_LEN: usize = 63;
const LABEL_VALUE_MAX_LEN: usize = 63;
const DNS1123_SUBDOMAIN_MAX_LEN: usize = 253;

const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', \
     and must start and end with an alphanumeric character";
const QUALIFIED_NAME_EXAMPLES: &[&str] = &["MyName", "my.name", "123-abc"];

const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of \
     alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_EXAMPLES: &[&str] = &["MyValue", "my_value", "12345"];

const DNS1123_SUBDOMAIN_FMT: &str =
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
     alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";

const EMPTY_ERR: &str = "must be non-empty";

/// Checks a label key: an optional DNS-1123 subdomain prefix (≤253) and `/`,
/// then a name (≤63) of `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`.
/// The error text is Kubernetes' (several problems are joined with "; ").
pub fn validate_label_key(k: &str) -> Result<(), String> {
    join_errors(qualified_name_errors(k))
}

/// Checks a label value: empty, or ≤63 characters of the label name charset.
pub fn validate_label_value(v: &str) -> Result<(), String> {
    let mut errs = Vec::new();
    if v.len() > LABEL_VALUE_MAX_LEN {
        errs.push(max_len_error(LABEL_VALUE_MAX_LEN));
    }
    if !v.is_empty() && !is_qualified_name_part(v) {
        errs.push(regex_error(
            LABEL_VALUE_ERR,
            LABEL_VALUE_FMT,
            LABEL_VALUE_EXAMPLES,
        ));
    }
    join_errors(errs)
}

fn join_errors(errs: Vec<String>) -> Result<(), String> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("; "))
    }
}

fn qualified_name_errors(k: &str) -> Vec<String> {
    let parts: Vec<&str> = k.split('/').collect();
    let mut errs = Vec::new();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            errs.extend(prefix_errors(prefix));
            *name
        }
        _ => {
            let regex = regex_error(
                QUALIFIED_NAME_ERR,
                QUALIFIED_NAME_FMT,
                QUALIFIED_NAME_EXAMPLES,
            );
            return vec![format!(
                "a qualified name {regex} with an optional DNS subdomain prefix and '/' \
                 (e.g. 'example.com/MyName')"
            )];
        }
    };
    if name.is_empty() {
        errs.push(format!("name part {EMPTY_ERR}"));
    } else if name.len() > QUALIFIED_NAME_MAX_LEN {
        errs.push(format!(
            "name part {}",
            max_len_error(QUALIFIED_NAME_MAX_LEN)
        ));
    }
    if !is_qualified_name_part(name) {
        let regex = regex_error(
            QUALIFIED_NAME_ERR,
            QUALIFIED_NAME_FMT,
            QUALIFIED_NAME_EXAMPLES,
        );
        errs.push(format!("name part {regex}"));
    }
    errs
}

fn prefix_errors(prefix: &str) -> Vec<String> {
    if prefix.is_empty() {
        return vec![format!("prefix part {EMPTY_ERR}")];
    }
    let mut errs = Vec::new();
    if prefix.len() > DNS1123_SUBDOMAIN_MAX_LEN {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LEN));
    }
    if !is_dns1123_subdomain(prefix) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs.into_iter()
        .map(|msg| format!("prefix part {msg}"))
        .collect()
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_qualified_name_part(s: &str) -> bool {
    let bytes = s.as_bytes();
    let inner_ok = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes.iter().all(inner_ok)
        }
        _ => false,
    }
}

/// Dot-separated DNS-1123 labels: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
fn is_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(is_dns1123_label)
}

fn is_dns1123_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    let edge_ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let inner_ok = |b: &u8| edge_ok(b) || *b == b'-';
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => edge_ok(first) && edge_ok(last) && bytes.iter().all(inner_ok),
        _ => false,
    }
}

fn max_len_error(max: usize) -> String {
    format!("must be no more than {max} characters")
}

/// Kubernetes' `RegexError` wording, examples included.
fn regex_error(msg: &str, regex: &str, examples: &[&str]) -> String {
    let examples: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!(
        "{msg} (e.g. {}regex used for validation is '{regex}')",
        examples.join(" or ")
    )
}

// ---------------------------------------------------------------------------
// Label requirements
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One condition on one label key. `values` is sorted and deduplicated.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Builds a validated requirement (Kubernetes' `NewRequirement`).
    fn new(key: &str, op: Operator, mut values: Vec<String>) -> Result<Self, String> {
        if let Err(msg) = validate_label_key(key) {
            return Err(format!("key: Invalid value: {key:?}: {msg}"));
        }
        values.sort();
        values.dedup();
        check_value_count(op, &values)?;
        for (i, value) in values.iter().enumerate() {
            if let Err(msg) = validate_label_value(value) {
                return Err(format!(
                    "values[{i}][{key}]: Invalid value: {value:?}: {msg}"
                ));
            }
        }
        Ok(Self {
            key: key.to_owned(),
            op,
            values,
        })
    }

    fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.holds_for(labels.and_then(|m| m.get(&self.key)).map(value_text))
    }

    /// Whether the requirement holds when the label's value is `label` (None: unset).
    fn holds_for(&self, label: Option<Cow<'_, str>>) -> bool {
        match self.op {
            Operator::Exists => label.is_some(),
            Operator::DoesNotExist => label.is_none(),
            Operator::Equals | Operator::In => label.is_some_and(|v| self.has_value(&v)),
            Operator::NotEquals | Operator::NotIn => !label.is_some_and(|v| self.has_value(&v)),
            Operator::GreaterThan | Operator::LessThan => self.compare_integer(label.as_deref()),
        }
    }

    fn has_value(&self, value: &str) -> bool {
        self.values
            .binary_search_by(|v| v.as_str().cmp(value))
            .is_ok()
    }

    /// `>` / `<`: both the label and the bound must parse as integers.
    fn compare_integer(&self, label: Option<&str>) -> bool {
        let actual = label.and_then(|v| v.parse::<i64>().ok());
        let bound = self.values.first().and_then(|v| v.parse::<i64>().ok());
        match (actual, bound) {
            (Some(a), Some(b)) if self.op == Operator::GreaterThan => a > b,
            (Some(a), Some(b)) => a < b,
            _ => false,
        }
    }
}

/// Each operator's rule on how many values it takes.
fn check_value_count(op: Operator, values: &[String]) -> Result<(), String> {
    let problem = match op {
        Operator::In | Operator::NotIn if values.is_empty() => {
            "for 'in', 'notin' operators, values set can't be empty"
        }
        Operator::Equals | Operator::NotEquals if values.len() != 1 => {
            "exact-match compatibility requires one single value"
        }
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
            "values set must be empty for exists and does not exist"
        }
        Operator::GreaterThan | Operator::LessThan if values.len() != 1 => {
            "for 'Gt', 'Lt' operators, exactly one value is required"
        }
        Operator::GreaterThan | Operator::LessThan
            if values.iter().any(|v| v.parse::<i64>().is_err()) =>
        {
            "for 'Gt', 'Lt' operators, the value must be an integer"
        }
        _ => return Ok(()),
    };
    Err(format!("values: Invalid value: {values:?}: {problem}"))
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        let first = self.values.first().map(String::as_str).unwrap_or("");
        let set = self.values.join(",");
        match self.op {
            Operator::Exists => write!(f, "{key}"),
            Operator::DoesNotExist => write!(f, "!{key}"),
            Operator::Equals => write!(f, "{key}={first}"),
            Operator::NotEquals => write!(f, "{key}!={first}"),
            Operator::GreaterThan => write!(f, "{key}>{first}"),
            Operator::LessThan => write!(f, "{key}<{first}"),
            Operator::In => write!(f, "{key} in ({set})"),
            Operator::NotIn => write!(f, "{key} notin ({set})"),
        }
    }
}

/// Text of a JSON scalar as selectors compare it: strings as-is, null as "",
/// numbers and bools by their string form, objects/arrays by their JSON text.
pub fn value_text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        Value::Null => Cow::Borrowed(""),
        other => Cow::Owned(other.to_string()),
    }
}

// ---------------------------------------------------------------------------
// LabelSelector
// ---------------------------------------------------------------------------

/// A set of label requirements that must all hold. Empty selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// Sorted by key (stable), like Kubernetes, for a deterministic string form.
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parses the `labelSelector` query string syntax: `a=b`, `a==b`, `a!=b`,
    /// `a in (x,y)`, `a notin (x, y)`, `a` (exists), `!a` (does not exist),
    /// `a>1`, `a<1`; comma-separated requirements must all hold. Whitespace
    /// tolerant; keys may carry a DNS prefix. Empty string = everything.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let requirements = Parser::new(lex(s)).parse_selector()?;
        Ok(Self::from_requirements(requirements))
    }

    /// From a metav1.LabelSelector JSON object (`matchLabels` and
    /// `matchExpressions` with In, NotIn, Exists, DoesNotExist). Null or an
    /// empty object gives an empty selector; callers decide what that means.
    pub fn from_json(v: &Value) -> Result<Self, SelectorError> {
        let obj = match v {
            Value::Null => return Ok(Self::default()),
            Value::Object(obj) => obj,
            _ => return Err(invalid_selector("label selector must be an object")),
        };
        let mut requirements = match_labels_requirements(obj.get("matchLabels"))?;
        requirements.extend(match_expressions_requirements(obj.get("matchExpressions"))?);
        Ok(Self::from_requirements(requirements))
    }

    /// Map form `{"app":"web"}` (Service.spec.selector, ReplicationController):
    /// every key must equal its value. Keys and values are not validated;
    /// non-string values compare by their string form.
    pub fn from_map(m: &Map<String, Value>) -> Self {
        let requirements = m
            .iter()
            .map(|(key, value)| Requirement {
                key: key.clone(),
                op: Operator::Equals,
                values: vec![value_text(value).into_owned()],
            })
            .collect();
        Self::from_requirements(requirements)
    }

    /// True when every requirement holds for `labels` (None = no labels).
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Matches against the labels of an object (or of its view).
    pub fn matches_object<S: Selectable + ?Sized>(&self, obj: &S) -> bool {
        self.requirements
            .iter()
            .all(|r| r.holds_for(obj.label(&r.key)))
    }

    /// True when the selector has no requirements (selects everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Self { requirements }
    }
}

/// Canonical string form, e.g. `app=web,tier in (a,b)`; parses back to an
/// equal selector.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

fn invalid_selector(msg: impl fmt::Display) -> SelectorError {
    SelectorError::InvalidLabelSelector(format!("invalid label selector: {msg}"))
}

/// The present, non-null value of an optional JSON field.
fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

fn match_labels_requirements(v: Option<&Value>) -> Result<Vec<Requirement>, SelectorError> {
    let Some(v) = present(v) else {
        return Ok(Vec::new());
    };
    let labels = v
        .as_object()
        .ok_or_else(|| invalid_selector("matchLabels must be an object"))?;
    labels
        .iter()
        .map(|(key, value)| {
            let value = value
                .as_str()
                .ok_or_else(|| invalid_selector(format!("matchLabels[{key}] must be a string")))?;
            Requirement::new(key, Operator::Equals, vec![value.to_owned()])
                .map_err(SelectorError::InvalidLabelSelector)
        })
        .collect()
}

fn match_expressions_requirements(v: Option<&Value>) -> Result<Vec<Requirement>, SelectorError> {
    let Some(v) = present(v) else {
        return Ok(Vec::new());
    };
    let expressions = v
        .as_array()
        .ok_or_else(|| invalid_selector("matchExpressions must be a list"))?;
    expressions
        .iter()
        .enumerate()
        .map(|(i, e)| expression_requirement(i, e))
        .collect()
}

fn expression_requirement(index: usize, e: &Value) -> Result<Requirement, SelectorError> {
    let field = |name: &str| format!("matchExpressions[{index}].{name}");
    let key = e
        .get("key")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid_selector(format!("{} must be a string", field("key"))))?;
    let operator = present(e.get("operator"))
        .map(value_text)
        .unwrap_or_default();
    let op = match operator.as_ref() {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => {
            return Err(SelectorError::InvalidLabelSelector(format!(
                "{other:?} is not a valid label selector operator"
            )))
        }
    };
    let values = expression_values(present(e.get("values"))).ok_or_else(|| {
        invalid_selector(format!("{} must be a list of strings", field("values")))
    })?;
    Requirement::new(key, op, values).map_err(SelectorError::InvalidLabelSelector)
}

/// Absent values are an empty list; anything but a list of strings is None.
fn expression_values(v: Option<&Value>) -> Option<Vec<String>> {
    match v {
        None => Some(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect(),
        Some(_) => None,
    }
}

// ---------------------------------------------------------------------------
// Label selector lexer
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Identifier,
    In,
    NotIn,
    Bang,
    Equals,
    DoubleEquals,
    NotEquals,
    GreaterThan,
    LessThan,
    OpenParen,
    CloseParen,
    Comma,
    End,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Tok,
    text: String,
}

impl Token {
    fn new(text: &str) -> Self {
        let kind = match text {
            "!" => Tok::Bang,
            "!=" => Tok::NotEquals,
            "=" => Tok::Equals,
            "==" => Tok::DoubleEquals,
            ">" => Tok::GreaterThan,
            "<" => Tok::LessThan,
            "(" => Tok::OpenParen,
            ")" => Tok::CloseParen,
            "," => Tok::Comma,
            "in" => Tok::In,
            "notin" => Tok::NotIn,
            _ => Tok::Identifier,
        };
        Self {
            kind,
            text: text.to_owned(),
        }
    }

    fn end() -> Self {
        Self {
            kind: Tok::End,
            text: String::new(),
        }
    }
}

fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_symbol(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

/// Splits a label selector into tokens, always ending with `Tok::End`.
/// Identifiers run until whitespace or a symbol character.
fn lex(input: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut rest = input.trim_start_matches(is_whitespace);
    while let Some(first) = rest.chars().next() {
        let len = if is_symbol(first) {
            symbol_len(rest)
        } else {
            rest.find(|c| is_whitespace(c) || is_symbol(c))
                .unwrap_or(rest.len())
        };
        let (text, tail) = rest.split_at(len);
        tokens.push(Token::new(text));
        rest = tail.trim_start_matches(is_whitespace);
    }
    tokens.push(Token::end());
    tokens
}

/// Longest symbol at the start of `rest` (all symbols are ASCII).
fn symbol_len(rest: &str) -> usize {
    if rest.starts_with("!=") || rest.starts_with("==") {
        2
    } else {
        1
    }
}

// ---------------------------------------------------------------------------
// Label selector parser
// ---------------------------------------------------------------------------

/// Where the parser is: `in`/`notin` are keywords only in operator position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    Operator,
    Values,
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn new(tokens: Vec<Token>) -> Self {
        Self { tokens, pos: 0 }
    }

    fn peek(&self, ctx: Context) -> (Tok, &str) {
        match self.tokens.get(self.pos) {
            Some(token) => {
                let keyword = matches!(token.kind, Tok::In | Tok::NotIn);
                let kind = if keyword && ctx == Context::Values {
                    Tok::Identifier
                } else {
                    token.kind
                };
                (kind, token.text.as_str())
            }
            None => (Tok::End, ""),
        }
    }

    fn next(&mut self, ctx: Context) -> (Tok, String) {
        let (kind, text) = self.peek(ctx);
        let token = (kind, text.to_owned());
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        token
    }

    /// requirement ("," requirement)* | empty
    fn parse_selector(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            match self.peek(Context::Values) {
                (Tok::End, _) => return Ok(requirements),
                (Tok::Identifier | Tok::Bang, _) => {}
                (_, text) => {
                    return Err(SelectorError::Syntax(format!(
                        "found '{text}', expected: !, identifier, or 'end of string'"
                    )))
                }
            }
            let requirement = self
                .parse_requirement()
                .map_err(SelectorError::Requirement)?;
            requirements.push(requirement);
            match self.next(Context::Values) {
                (Tok::End, _) => return Ok(requirements),
                (Tok::Comma, _) => self.expect_requirement_after_comma()?,
                (_, text) => {
                    return Err(SelectorError::Syntax(format!(
                        "found '{text}', expected: ',' or 'end of string'"
                    )))
                }
            }
        }
    }

    fn expect_requirement_after_comma(&self) -> Result<(), SelectorError> {
        match self.peek(Context::Values) {
            (Tok::Identifier | Tok::Bang, _) => Ok(()),
            (_, text) => Err(SelectorError::Syntax(format!(
                "found '{text}', expected: identifier after ','"
            ))),
        }
    }

    /// ["!"] key [operator values]
    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, unary) = self.parse_key()?;
        if let Some(op) = unary {
            return Requirement::new(&key, op, Vec::new());
        }
        let op = self.parse_operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.parse_value_set()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(&key, op, values)
    }

    /// Reads the key; returns Exists/DoesNotExist when no binary operator follows.
    fn parse_key(&mut self) -> Result<(String, Option<Operator>), String> {
        let (mut kind, mut text) = self.next(Context::Values);
        let negated = kind == Tok::Bang;
        if negated {
            (kind, text) = self.next(Context::Values);
        }
        if kind != Tok::Identifier {
            return Err(format!("found '{text}', expected: identifier"));
        }
        if let Err(msg) = validate_label_key(&text) {
            return Err(format!("key: Invalid value: {text:?}: {msg}"));
        }
        let ends_here = matches!(self.peek(Context::Values).0, Tok::End | Tok::Comma);
        let unary = if negated {
            Some(Operator::DoesNotExist)
        } else if ends_here {
            Some(Operator::Exists)
        } else {
            None
        };
        Ok((text, unary))
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        match self.next(Context::Operator) {
            (Tok::In, _) => Ok(Operator::In),
            (Tok::NotIn, _) => Ok(Operator::NotIn),
            (Tok::Equals | Tok::DoubleEquals, _) => Ok(Operator::Equals),
            (Tok::NotEquals, _) => Ok(Operator::NotEquals),
            (Tok::GreaterThan, _) => Ok(Operator::GreaterThan),
            (Tok::LessThan, _) => Ok(Operator::LessThan),
            (_, text) => Err(format!(
                "found '{text}', expected: in, notin, =, ==, !=, gt, lt"
            )),
        }
    }

    /// "(" [value ("," value)*] ")"; empty entries are empty-string values.
    fn parse_value_set(&mut self) -> Result<Vec<String>, String> {
        let (kind, text) = self.next(Context::Values);
        if kind != Tok::OpenParen {
            return Err(format!("found '{text}' expected: '('"));
        }
        match self.peek(Context::Values) {
            (Tok::CloseParen, _) => {
                self.next(Context::Values);
                Ok(vec![String::new()])
            }
            (Tok::Identifier | Tok::Comma, _) => {
                let values = self.parse_value_list()?;
                match self.next(Context::Values) {
                    (Tok::CloseParen, _) => Ok(values),
                    (_, text) => Err(format!("found '{text}', expected: ')'")),
                }
            }
            (_, text) => Err(format!("found '{text}', expected: ',', ')' or identifier")),
        }
    }

    /// Values up to (not including) the closing parenthesis.
    fn parse_value_list(&mut self) -> Result<Vec<String>, String> {
        let mut values = Vec::new();
        loop {
            match self.next(Context::Values) {
                (Tok::Identifier, value) => {
                    values.push(value);
                    match self.peek(Context::Values) {
                        (Tok::Comma, _) => {}
                        (Tok::CloseParen, _) => return Ok(values),
                        (_, text) => return Err(format!("found '{text}', expected: ',' or ')'")),
                    }
                }
                (Tok::Comma, _) => {
                    // "(,x)", "(x,)" and "(x,,y)" carry an empty-string value.
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    match self.peek(Context::Values).0 {
                        Tok::CloseParen => {
                            values.push(String::new());
                            return Ok(values);
                        }
                        Tok::Comma => {
                            self.next(Context::Values);
                            values.push(String::new());
                        }
                        _ => {}
                    }
                }
                (_, text) => return Err(format!("found '{text}', expected: ',', or identifier")),
            }
        }
    }

    /// One value after `=`, `!=`, `>` or `<`; nothing at all means "".
    fn parse_exact_value(&mut self) -> Result<Vec<String>, String> {
        if matches!(self.peek(Context::Values).0, Tok::End | Tok::Comma) {
            return Ok(vec![String::new()]);
        }
        match self.next(Context::Values) {
            (Tok::Identifier, value) => Ok(vec![value]),
            (_, text) => Err(format!("found '{text}', expected: identifier")),
        }
    }
}

// ---------------------------------------------------------------------------
// FieldSelector
// ---------------------------------------------------------------------------

/// One `field=value` or `field!=value` term.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldTerm {
    field: String,
    value: String,
    negated: bool,
}

impl FieldTerm {
    fn matches<S: Selectable + ?Sized>(&self, obj: &S) -> bool {
        (obj.field(&self.field) == self.value.as_str()) != self.negated
    }
}

/// A set of field terms that must all hold. Empty selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

impl FieldSelector {
    /// Parses the `fieldSelector` syntax: `k=v`, `k==v`, `k!=v`, comma
    /// separated. Values may escape `\,` `\=` `\\`. Whitespace around fields
    /// and values is ignored; empty terms are skipped.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let terms = split_unescaped_commas(s)
            .into_iter()
            .map(str::trim)
            .filter(|term| !term.is_empty())
            .map(|term| parse_field_term(s, term))
            .collect::<Result<_, _>>()?;
        Ok(Self { terms })
    }

    /// Errors with "field label not supported: x" on the first field not in `supported`.
    pub fn validate(&self, supported: &[&str]) -> Result<(), SelectorError> {
        match self
            .terms
            .iter()
            .find(|t| !supported.contains(&t.field.as_str()))
        {
            Some(term) => Err(SelectorError::UnsupportedField(term.field.clone())),
            None => Ok(()),
        }
    }

    /// Looks each dotted path up in `obj` and compares it as a string
    /// (missing = "", numbers/bools by string form; events' `source` means
    /// `source.component`).
    pub fn matches<S: Selectable + ?Sized>(&self, obj: &S) -> bool {
        self.terms.iter().all(|t| t.matches(obj))
    }

    /// True when the selector has no terms (selects everything).
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The field paths the selector looks at.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.terms.iter().map(|t| t.field.as_str())
    }

    /// The value `field` is pinned to by an `=`/`==` term, if any. Every
    /// matching object has it, so a store may narrow its scan to it.
    pub fn exact_value(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| !t.negated && t.field == field)
            .map(|t| t.value.as_str())
    }
}

/// Canonical string form, values escaped; parses back to an equal selector.
impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, term) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = if term.negated { "!=" } else { "=" };
            write!(f, "{}{op}{}", term.field, escape_field_value(&term.value))?;
        }
        Ok(())
    }
}

/// Splits on commas that are not escaped by a backslash.
fn split_unescaped_commas(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            parts.push(s.get(start..i).unwrap_or_default());
            start = i + 1;
        }
    }
    parts.push(s.get(start..).unwrap_or_default());
    parts
}

fn parse_field_term(selector: &str, term: &str) -> Result<FieldTerm, SelectorError> {
    let not_understood = || SelectorError::FieldTerm {
        selector: selector.to_owned(),
        term: term.to_owned(),
    };
    let (field, op, raw_value) = split_field_term(term).ok_or_else(not_understood)?;
    let field = field.trim();
    if !is_field_path(field) {
        return Err(not_understood());
    }
    Ok(FieldTerm {
        field: field.to_owned(),
        value: unescape_field_value(raw_value.trim())?,
        negated: op == "!=",
    })
}

/// A non-empty field path free of whitespace, `!` and `\`.
fn is_field_path(field: &str) -> bool {
    !field.is_empty()
        && !field
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '!' | '\\'))
}

/// Splits at the first operator: (field, operator, raw value).
fn split_field_term(term: &str) -> Option<(&str, &'static str, &str)> {
    const OPERATORS: [&str; 3] = ["!=", "==", "="];
    term.char_indices().find_map(|(i, _)| {
        let rest = term.get(i..)?;
        let op = OPERATORS.into_iter().find(|op| rest.starts_with(op))?;
        Some((term.get(..i)?, op, rest.get(op.len()..)?))
    })
}

fn unescape_field_value(raw: &str) -> Result<String, SelectorError> {
    let mut value = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('\\' | ',' | '=')) => value.push(escaped),
                Some(other) => return Err(SelectorError::FieldEscape(format!("\\{other}"))),
                None => return Err(SelectorError::FieldEscape("\\".to_owned())),
            },
            ',' | '=' => return Err(SelectorError::FieldUnescaped(c)),
            _ => value.push(c),
        }
    }
    Ok(value)
}

fn escape_field_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// What label and field selectors read of an object: a whole object (`Value`) or a
/// smaller view of it kept for matching.
pub trait Selectable {
    /// The label's value as text; None when the object lacks the label.
    fn label(&self, key: &str) -> Option<Cow<'_, str>>;
    /// The text a dotted field path compares as (see [`field_value`]).
    fn field(&self, path: &str) -> Cow<'_, str>;
}

impl Selectable for Value {
    fn label(&self, key: &str) -> Option<Cow<'_, str>> {
        let labels = self.get("metadata")?.get("labels")?.as_object()?;
        labels.get(key).map(value_text)
    }

    fn field(&self, path: &str) -> Cow<'_, str> {
        field_value(self, path)
    }
}

/// The string a field path compares as in `obj`.
pub fn field_value<'a>(obj: &'a Value, path: &str) -> Cow<'a, str> {
    let found = path.split('.').try_fold(obj, |v, segment| v.get(segment));
    field_text(path, found)
}

/// The string a field path compares as when its value is `found` (None: missing).
pub fn field_text<'a>(path: &str, found: Option<&'a Value>) -> Cow<'a, str> {
    match present(found) {
        // core/v1 Event: the `source` field label means `source.component`.
        Some(Value::Object(source)) if path == "source" => {
            source.get("component").map(value_text).unwrap_or_default()
        }
        Some(v) => value_text(v),
        None => Cow::Borrowed(missing_field_value(path)),
    }
}

/// Booleans Kubernetes reports as "false" when unset.
fn missing_field_value(path: &str) -> &'static str {
    match path {
        "spec.hostNetwork" | "spec.unschedulable" => "false",
        _ => "",
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("parse {s:?}: {e}"))
    }

    fn sel_matches(s: &str, l: Value) -> bool {
        sel(s).matches(Some(&labels(l)))
    }

    fn parse_err(s: &str) -> String {
        match LabelSelector::parse(s) {
            Ok(parsed) => panic!("{s:?} parsed as {parsed}"),
            Err(e) => e.to_string(),
        }
    }

    fn fsel(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap_or_else(|e| panic!("parse {s:?}: {e}"))
    }

    // --- label selector: operators ---

    #[test]
    fn empty_selector_matches_everything() {
        for s in ["", "   ", "\t\n"] {
            let parsed = sel(s);
            assert!(parsed.is_empty());
            assert!(parsed.matches(None));
            assert!(parsed.matches(Some(&labels(json!({"a": "b"})))));
            assert_eq!(parsed.to_string(), "");
        }
    }

    #[test]
    fn equals_and_double_equals() {
        for s in ["app=web", "app==web", " app = web ", "app ==web"] {
            assert!(sel_matches(s, json!({"app": "web"})), "{s}");
            assert!(!sel_matches(s, json!({"app": "db"})), "{s}");
            assert!(!sel_matches(s, json!({})), "{s}");
            assert!(!sel(s).matches(None), "{s}");
        }
    }

    #[test]
    fn not_equals_matches_missing_label() {
        assert!(!sel_matches("app!=web", json!({"app": "web"})));
        assert!(sel_matches("app!=web", json!({"app": "db"})));
        assert!(sel_matches("app!=web", json!({})));
        assert!(sel("app!=web").matches(None));
    }

    #[test]
    fn empty_exact_value() {
        assert!(sel_matches("a=", json!({"a": ""})));
        assert!(!sel_matches("a=", json!({"a": "x"})));
        assert!(!sel_matches("a=,b", json!({"b": "1"})));
        assert!(sel_matches("a!=,b", json!({"a": "x", "b": "1"})));
    }

    #[test]
    fn in_and_notin() {
        let s = "tier in (front, back)";
        assert!(sel_matches(s, json!({"tier": "front"})));
        assert!(sel_matches(s, json!({"tier": "back"})));
        assert!(!sel_matches(s, json!({"tier": "mid"})));
        assert!(!sel_matches(s, json!({})));

        let s = "tier notin (front,back)";
        assert!(!sel_matches(s, json!({"tier": "front"})));
        assert!(sel_matches(s, json!({"tier": "mid"})));
        assert!(sel_matches(s, json!({})));
        assert!(sel(s).matches(None));
    }

    #[test]
    fn in_with_empty_values() {
        assert!(sel_matches("a in ()", json!({"a": ""})));
        assert!(!sel_matches("a in ()", json!({"a": "x"})));
        assert!(sel_matches("a in (,x)", json!({"a": ""})));
        assert!(sel_matches("a in (x,)", json!({"a": ""})));
        assert!(sel_matches("a in (x,,y)", json!({"a": ""})));
        assert!(sel_matches("a in (x,,y)", json!({"a": "y"})));
        assert_eq!(sel("a in (y,,x)").to_string(), "a in (,x,y)");
    }

    #[test]
    fn keywords_are_plain_values_and_keys() {
        assert!(sel_matches("a in (in,notin)", json!({"a": "notin"})));
        assert!(sel_matches("a=in", json!({"a": "in"})));
        assert!(sel_matches("in=x", json!({"in": "x"})));
        assert!(sel_matches("notin", json!({"notin": "1"})));
    }

    #[test]
    fn exists_and_does_not_exist() {
        assert!(sel_matches("app", json!({"app": ""})));
        assert!(!sel_matches("app", json!({"x": "y"})));
        assert!(!sel("app").matches(None));
        assert!(sel_matches("!app", json!({"x": "y"})));
        assert!(sel_matches("! app", json!({})));
        assert!(!sel_matches("!app", json!({"app": "web"})));
        assert!(sel("!app").matches(None));
    }

    #[test]
    fn greater_and_less_than() {
        assert!(sel_matches("n>5", json!({"n": "6"})));
        assert!(!sel_matches("n>5", json!({"n": "5"})));
        assert!(!sel_matches("n>5", json!({"n": "abc"})));
        assert!(!sel_matches("n>5", json!({})));
        assert!(sel_matches("n < 5", json!({"n": "-1"})));
        assert!(!sel_matches("n<5", json!({"n": "5"})));
        assert!(parse_err("n>x").contains("must be an integer"));
        assert!(parse_err("n>").contains("must be an integer"));
        assert_eq!(sel("n>5,m<2").to_string(), "m<2,n>5");
    }

    #[test]
    fn combinations_must_all_hold() {
        let s = "app=web, tier in (a,b),!canary,env!=prod,release";
        let good = json!({"app": "web", "tier": "a", "env": "dev", "release": "1"});
        assert!(sel_matches(s, good.clone()));
        for (k, v) in [
            ("app", json!("db")),
            ("tier", json!("c")),
            ("canary", json!("x")),
            ("env", json!("prod")),
        ] {
            let mut l = labels(good.clone());
            l.insert(k.to_owned(), v);
            assert!(!sel(s).matches(Some(&l)), "{k}");
        }
        let mut l = labels(good);
        l.remove("release");
        assert!(!sel(s).matches(Some(&l)));
    }

    #[test]
    fn same_key_twice_is_anded() {
        assert!(!sel_matches("a=x,a=y", json!({"a": "x"})));
        assert!(sel_matches("a!=x,a!=y", json!({"a": "z"})));
    }

    #[test]
    fn whitespace_tolerance() {
        let a = sel("  app  =  web  ,\ttier   in(  a ,b )  ,  ! canary ");
        let b = sel("app=web,tier in (a,b),!canary");
        assert_eq!(a, b);
        assert_eq!(sel("x notin(a)"), sel("x notin (a)"));
    }

    #[test]
    fn prefixed_keys() {
        let s = "app.kubernetes.io/name=web,example.com/tier in (a)";
        let l = json!({"app.kubernetes.io/name": "web", "example.com/tier": "a"});
        assert!(sel_matches(s, l));
        assert!(sel_matches("!k8s.io/x", json!({})));
        assert!(parse_err("Example.com/x").contains("prefix part"));
        assert!(parse_err("/x").contains("prefix part must be non-empty"));
        assert!(parse_err("a/b/c").contains("a qualified name"));
    }

    #[test]
    fn non_string_label_values_compare_by_text() {
        let l = labels(json!({"n": 5, "b": true}));
        assert!(sel("n=5,b=true,n>4").matches(Some(&l)));
    }

    // --- label selector: errors ---

    #[test]
    fn parse_errors() {
        assert_eq!(
            parse_err("a in"),
            "unable to parse requirement: found '' expected: '('"
        );
        assert_eq!(
            parse_err("in (x)"),
            "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt"
        );
        assert_eq!(
            parse_err("=b"),
            "found '=', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            parse_err("a=(b"),
            "unable to parse requirement: found '(', expected: identifier"
        );
        assert_eq!(parse_err("a,"), "found '', expected: identifier after ','");
        assert_eq!(
            parse_err("a=b c"),
            "found 'c', expected: ',' or 'end of string'"
        );
        assert_eq!(
            parse_err("a in (x y)"),
            "unable to parse requirement: found 'y', expected: ',' or ')'"
        );
        assert_eq!(
            parse_err("a in (x"),
            "unable to parse requirement: found '', expected: ',' or ')'"
        );
        assert_eq!(
            parse_err("a in (=)"),
            "unable to parse requirement: found '=', expected: ',', ')' or identifier"
        );
        assert_eq!(
            parse_err("a in (x,,)"),
            "unable to parse requirement: found ')', expected: ',', or identifier"
        );
        assert_eq!(
            parse_err("!=a"),
            "found '!=', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            parse_err("! =a"),
            "unable to parse requirement: found '=', expected: identifier"
        );
        assert_eq!(
            parse_err("!a=b"),
            "found '=', expected: ',' or 'end of string'"
        );
        assert_eq!(parse_err(",a"), parse_err(",")); // leading comma
        assert!(parse_err("a b").contains("found 'b', expected: in, notin"));
        assert!(parse_err("a,,b").contains("identifier after ','"));
        assert!(parse_err("a>-1").contains("Invalid value: \"-1\""));
        // An operator with nothing after it means the empty value.
        assert_eq!(sel("a=="), sel("a="));
    }

    #[test]
    fn invalid_keys_and_values_are_rejected() {
        let err = parse_err("a$=b");
        assert!(err.starts_with("unable to parse requirement: key: Invalid value: \"a$\": name part must consist of"), "{err}");
        let err = parse_err("a=b$");
        assert!(err.starts_with("unable to parse requirement: values[0][a]: Invalid value: \"b$\": a valid label must be"), "{err}");
        let long = "x".repeat(64);
        assert!(parse_err(&format!("a={long}")).contains("must be no more than 63 characters"));
        assert!(parse_err(&format!("{long}=a")).contains("must be no more than 63 characters"));
        assert!(parse_err("a in (ok, -bad)").contains("Invalid value: \"-bad\""));
        assert!(parse_err("é=1").contains("name part"));
    }

    #[test]
    fn weird_input_never_panics() {
        let inputs = [
            "(",
            ")",
            "!",
            "!!",
            "!!a",
            "a!",
            "a!!=b",
            "a=!b",
            "é",
            "a=é",
            "a in (é)",
            "\u{0}",
            "a\u{0}=b",
            "((((",
            "a notin",
            "a notin (",
            "a notin )",
            ",,,",
            "a=b,",
            "a>>1",
            "a<=1",
            "a=>1",
            "a==b==c",
            "a in ((x))",
        ];
        for s in inputs {
            let _ = LabelSelector::parse(s);
        }
    }

    /// Deterministic pseudo-random inputs: parsing never panics, and whatever
    /// parses prints to a string that parses back to the same selector.
    #[test]
    fn generated_inputs_never_panic_and_round_trip() {
        const PIECES: &[&str] = &[
            "a", "b", "x.io/k", "in", "notin", "(", ")", ",", "=", "==", "!=", "!", ">", "<", " ",
            "1", "-", "é", "\\", "v_1",
        ];
        let mut seed: u64 = 0x5eed;
        let mut parsed = 0;
        for _ in 0..20_000 {
            let mut input = String::new();
            for _ in 0..(seed % 9) {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                input.push_str(PIECES[(seed >> 33) as usize % PIECES.len()]);
            }
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            if let Ok(first) = LabelSelector::parse(&input) {
                parsed += 1;
                assert_eq!(sel(&first.to_string()), first, "{input:?}");
            }
            if let Ok(first) = FieldSelector::parse(&input) {
                assert_eq!(
                    FieldSelector::parse(&first.to_string()).ok(),
                    Some(first.clone()),
                    "{input:?} {first:?}"
                );
            }
        }
        assert!(parsed > 100, "only {parsed} inputs parsed");
    }

    // --- Display ---

    #[test]
    fn display_is_canonical_and_sorted() {
        assert_eq!(
            sel("tier in (b,a,b), app==web, !canary, env, x!=y, n notin (2,1)").to_string(),
            "app=web,!canary,env,n notin (1,2),tier in (a,b),x!=y"
        );
    }

    #[test]
    fn display_round_trip() {
        let inputs = [
            "app=web,tier in (a,b)",
            "a in (),b notin (,x),c=,d!=",
            "example.com/a,!example.com/b,n>3,m<0",
            "x==y, x!=z, x in (y)",
        ];
        for s in inputs {
            let first = sel(s);
            let again = sel(&first.to_string());
            assert_eq!(first, again, "{s}");
            assert_eq!(first.to_string(), again.to_string());
        }
        let sample = json!({"app": "web", "tier": "b", "c": "", "n": "5"});
        let a = sel("app=web,tier in (a,b),c=,n>3");
        assert_eq!(
            a.matches(Some(&labels(sample.clone()))),
            sel(&a.to_string()).matches(Some(&labels(sample)))
        );
    }

    // --- from_json / from_map ---

    #[test]
    fn from_json_null_and_empty_are_empty() {
        assert!(LabelSelector::from_json(&Value::Null).unwrap().is_empty());
        assert!(LabelSelector::from_json(&json!({})).unwrap().is_empty());
        let nulls = json!({"matchLabels": null, "matchExpressions": null});
        assert!(LabelSelector::from_json(&nulls).unwrap().is_empty());
    }

    #[test]
    fn from_json_match_labels_and_expressions() {
        let v = json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "back"]},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                {"key": "release", "operator": "Exists"},
                {"key": "canary", "operator": "DoesNotExist", "values": []}
            ]
        });
        let s = LabelSelector::from_json(&v).unwrap();
        assert_eq!(
            s.to_string(),
            "app=web,!canary,env notin (prod),release,tier in (back,front)"
        );
        let ok = json!({"app": "web", "tier": "front", "release": "1"});
        assert!(s.matches(Some(&labels(ok))));
        let bad = json!({"app": "web", "tier": "front", "release": "1", "canary": "y"});
        assert!(!s.matches(Some(&labels(bad))));
        assert!(!s.matches(Some(&labels(json!({"app": "web", "tier": "front"})))));
        // Same semantics as its string form.
        assert_eq!(sel(&s.to_string()), s);
    }

    #[test]
    fn from_json_errors() {
        let err = |v: Value| LabelSelector::from_json(&v).unwrap_err().to_string();
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]})),
            "\"Gt\" is not a valid label selector operator"
        );
        assert!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "In"}]}))
                .contains("values set can't be empty")
        );
        assert!(err(
            json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]})
        )
        .contains("values set must be empty"));
        assert!(err(json!({"matchLabels": {"a$": "b"}})).contains("Invalid value: \"a$\""));
        assert!(err(json!({"matchLabels": {"a": "b$"}})).contains("Invalid value: \"b$\""));
        assert!(err(json!({"matchLabels": {"a": 1}})).contains("matchLabels[a]"));
        assert!(err(json!({"matchLabels": []})).contains("matchLabels"));
        assert!(err(json!({"matchExpressions": {}})).contains("matchExpressions"));
        assert!(err(json!({"matchExpressions": [{"operator": "Exists"}]}))
            .contains("matchExpressions[0].key"));
        assert!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "In", "values": [1]}]}))
                .contains("matchExpressions[0].values")
        );
        assert!(err(json!({"matchExpressions": [{"key": "a"}]}))
            .contains("is not a valid label selector operator"));
        assert!(err(json!("app=web")).contains("must be an object"));
    }

    #[test]
    fn from_map_requires_every_pair() {
        let m = labels(json!({"tier": "front", "app": "web"}));
        let s = LabelSelector::from_map(&m);
        assert_eq!(s.to_string(), "app=web,tier=front");
        assert!(s.matches(Some(&labels(
            json!({"app": "web", "tier": "front", "x": "y"})
        ))));
        assert!(!s.matches(Some(&labels(json!({"app": "web"})))));
        assert!(LabelSelector::from_map(&Map::new()).is_empty());
    }

    #[test]
    fn matches_object_uses_metadata_labels() {
        let s = sel("app=web");
        assert!(s.matches_object(&json!({"metadata": {"labels": {"app": "web"}}})));
        assert!(!s.matches_object(&json!({"metadata": {"labels": {"app": "db"}}})));
        assert!(!s.matches_object(&json!({"metadata": {}})));
        assert!(!s.matches_object(&json!("not an object")));
        assert!(sel("!app").matches_object(&json!({"metadata": {"labels": null}})));
        assert!(sel("").matches_object(&json!({})));
    }

    // --- label key / value validation ---

    #[test]
    fn label_key_validation() {
        for ok in [
            "a",
            "A",
            "1",
            "my.name",
            "my_name-1",
            "app.kubernetes.io/name",
            "k8s.io/a",
            &"x".repeat(63),
            &format!("{}/x", "a".repeat(253)),
        ] {
            assert_eq!(validate_label_key(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            validate_label_key("-a").unwrap_err(),
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start \
             and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', \
             regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        );
        assert_eq!(
            validate_label_key("").unwrap_err(),
            format!(
                "name part must be non-empty; {}",
                validate_label_key("-a").unwrap_err()
            )
        );
        assert_eq!(
            validate_label_key(&"x".repeat(64)).unwrap_err(),
            "name part must be no more than 63 characters"
        );
        assert!(validate_label_key("a/")
            .unwrap_err()
            .contains("name part must be non-empty"));
        assert!(validate_label_key("UP.com/a")
            .unwrap_err()
            .starts_with("prefix part a lowercase RFC 1123 subdomain"));
        assert!(validate_label_key("a..b/a").is_err());
        assert!(validate_label_key("-a.com/a").is_err());
        assert!(validate_label_key(&format!("{}/x", "a".repeat(254)))
            .unwrap_err()
            .contains("prefix part must be no more than 253 characters"));
        assert!(validate_label_key("a b").is_err());
        assert!(validate_label_key("ä").is_err());
    }

    #[test]
    fn label_value_validation() {
        for ok in ["", "a", "MyValue", "my_value", "1.2-3", &"v".repeat(63)] {
            assert_eq!(validate_label_value(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            validate_label_value("a/b").unwrap_err(),
            "a valid label must be an empty string or consist of alphanumeric characters, '-', \
             '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  \
             or 'my_value',  or '12345', regex used for validation is \
             '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        );
        assert_eq!(
            validate_label_value(&"v".repeat(64)).unwrap_err(),
            "must be no more than 63 characters"
        );
        assert!(validate_label_value("a.").is_err());
        assert!(validate_label_value(" a").is_err());
    }

    // --- field selector ---

    fn pod() -> Value {
        json!({
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"nodeName": "node-a", "restartPolicy": "Always", "priority": 10},
            "status": {"phase": "Running", "ready": true}
        })
    }

    #[test]
    fn field_selector_operators() {
        assert!(fsel("metadata.name=web-1").matches(&pod()));
        assert!(fsel("metadata.name==web-1").matches(&pod()));
        assert!(!fsel("metadata.name!=web-1").matches(&pod()));
        assert!(fsel("status.phase!=Pending").matches(&pod()));
        assert!(fsel("metadata.name=web-1,status.phase=Running").matches(&pod()));
        assert!(!fsel("metadata.name=web-1,status.phase=Pending").matches(&pod()));
        assert!(fsel(" metadata.name = web-1 , ").matches(&pod()));
    }

    #[test]
    fn field_selector_missing_and_scalars() {
        assert!(fsel("spec.schedulerName=").matches(&pod()));
        assert!(fsel("spec.nodeName!=").matches(&pod()));
        assert!(!fsel("spec.nodeName=").matches(&pod()));
        assert!(fsel("spec.priority=10,status.ready=true").matches(&pod()));
        assert!(fsel("spec.hostNetwork=false").matches(&pod()));
        assert!(fsel("metadata.name.deeper=").matches(&pod()));
        assert!(fsel("metadata.name=x").matches(&json!({"metadata": {"name": "x"}})));
        assert!(fsel("metadata.namespace=").matches(&json!({"metadata": {"name": "x"}})));
        assert!(fsel("a=").matches(&json!(null)));
    }

    #[test]
    fn field_selector_empty() {
        for s in ["", " ", ",", " , ,"] {
            let f = fsel(s);
            assert!(f.is_empty());
            assert!(f.matches(&pod()));
            assert_eq!(f.exact_value("metadata.name"), None);
        }
    }

    #[test]
    fn field_selector_escaping() {
        let f = fsel(r"metadata.name=a\,b\=c\\d");
        assert_eq!(f.exact_value("metadata.name"), Some(r"a,b=c\d"));
        assert!(f.matches(&json!({"metadata": {"name": r"a,b=c\d"}})));
        assert_eq!(f.to_string(), r"metadata.name=a\,b\=c\\d");
        assert_eq!(fsel(&f.to_string()), f);

        let two = fsel(r"a=x\,y,b=z");
        assert_eq!(two.exact_value("a"), Some("x,y"));
        assert_eq!(two.exact_value("b"), Some("z"));
    }

    #[test]
    fn field_selector_errors() {
        let err = |s: &str| FieldSelector::parse(s).unwrap_err().to_string();
        assert_eq!(
            err("metadata.name"),
            "invalid selector: 'metadata.name'; can't understand 'metadata.name'"
        );
        assert_eq!(
            err("a=b,c"),
            "invalid selector: 'a=b,c'; can't understand 'c'"
        );
        assert_eq!(err("=x"), "invalid selector: '=x'; can't understand '=x'");
        assert_eq!(
            err(r"a=b\x"),
            r"invalid field selector: invalid escape sequence: \x"
        );
        assert_eq!(
            err("a=b\\"),
            r"invalid field selector: invalid escape sequence: \"
        );
        assert_eq!(
            err("a=b=c"),
            "invalid field selector: unescaped character in value: '='"
        );
        assert!(FieldSelector::parse("a!=b!=c").is_err());
        assert_eq!(
            err("! =x"),
            "invalid selector: '! =x'; can't understand '! =x'"
        );
        assert!(FieldSelector::parse("a b=x").is_err());
        assert!(FieldSelector::parse(r"a\,b=x").is_err());
        for s in ["é", "a=é", "\\", "\\,", "!", "!=", "a\\=b", "=", "==="] {
            let _ = FieldSelector::parse(s);
        }
    }

    #[test]
    fn field_selector_validate() {
        let supported = [
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "status.phase",
        ];
        assert!(fsel("metadata.name=a,spec.nodeName=n")
            .validate(&supported)
            .is_ok());
        assert!(fsel("").validate(&[]).is_ok());
        let err = fsel("metadata.name=a,spec.bogus=x")
            .validate(&supported)
            .unwrap_err();
        assert_eq!(
            err,
            SelectorError::UnsupportedField("spec.bogus".to_owned())
        );
        assert_eq!(err.to_string(), "field label not supported: spec.bogus");
    }

    #[test]
    fn exact_value_for_narrowing() {
        let f = fsel("metadata.namespace=ns1,metadata.name!=skip,metadata.name==keep");
        assert_eq!(f.exact_value("metadata.namespace"), Some("ns1"));
        assert_eq!(f.exact_value("metadata.name"), Some("keep"));
        assert_eq!(f.exact_value("status.phase"), None);
        assert_eq!(fsel("metadata.name!=x").exact_value("metadata.name"), None);
        assert_eq!(
            fsel("metadata.name=").exact_value("metadata.name"),
            Some("")
        );
    }

    #[test]
    fn event_fields() {
        let event = json!({
            "kind": "Event",
            "metadata": {"name": "web-1.17f", "namespace": "default"},
            "involvedObject": {
                "kind": "Pod", "name": "web-1", "namespace": "default",
                "uid": "0b1c-42", "apiVersion": "v1"
            },
            "reason": "Scheduled",
            "type": "Normal",
            "source": {"component": "default-scheduler", "host": "node-a"}
        });
        let supported = [
            "involvedObject.name",
            "involvedObject.namespace",
            "involvedObject.uid",
            "involvedObject.kind",
            "reason",
            "type",
            "source",
        ];
        let f = fsel(
            "involvedObject.uid=0b1c-42,involvedObject.name=web-1,involvedObject.kind=Pod,\
             involvedObject.namespace=default,reason=Scheduled,type=Normal,source=default-scheduler",
        );
        assert!(f.validate(&supported).is_ok());
        assert!(f.matches(&event));
        assert!(!fsel("involvedObject.uid=other").matches(&event));
        assert!(fsel("type!=Warning").matches(&event));
        assert!(!fsel("source=kubelet").matches(&event));
        assert!(fsel("source=").matches(&json!({"source": {}})));
        assert!(fsel("source=x").matches(&json!({"source": "x"})));
        assert!(fsel("source.host=node-a").matches(&event));
    }
}
