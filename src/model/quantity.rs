//! Kubernetes resource quantities (`500m`, `256Mi`, `1e3`): the grammar and error
//! texts of apimachinery's `ParseQuantity`, shared by API validation, the scheduler
//! and the node agent.
//!
//! Owns: [`parse_quantity`] and its messages. Calls: nothing in skiff.

/// The message for text that is not a quantity at all (apimachinery's wording).
pub const QUANTITY_FORMAT_MSG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// Parses a Kubernetes quantity (`500m`, `256Mi`, `1.5`, `1e3`, `2Gi`, `100k`)
/// into its value in base units (cores, bytes, ...), with the same grammar and
/// error texts as apimachinery's `ParseQuantity`.
pub fn parse_quantity(s: &str) -> Result<f64, String> {
    const NUMERIC_MSG: &str = "unable to parse numeric value";
    const SUFFIX_MSG: &str = "unable to parse quantity's suffix";
    let b = s.as_bytes();
    if b.is_empty() {
        return Err(QUANTITY_FORMAT_MSG.into());
    }
    let mut pos = 0;
    let negative = match b[0] {
        b'-' => {
            pos = 1;
            true
        }
        b'+' => {
            pos = 1;
            false
        }
        _ => false,
    };
    let digits_end =
        |from: usize| from + b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let int_end = digits_end(pos);
    let int_part = &s[pos..int_end];
    pos = int_end;
    let mut frac_part = "";
    if b.get(pos) == Some(&b'.') {
        let frac_end = digits_end(pos + 1);
        frac_part = &s[pos + 1..frac_end];
        pos = frac_end;
    }
    // Suffix: letters from the suffix alphabet, then an optional signed integer.
    let suffix_start = pos;
    pos += b[pos..]
        .iter()
        .take_while(|c| b"eEinumkKMGTP".contains(c))
        .count();
    if matches!(b.get(pos), Some(b'+') | Some(b'-')) {
        pos += 1;
    }
    pos = digits_end(pos);
    if pos != b.len() {
        return Err(QUANTITY_FORMAT_MSG.into());
    }
    let suffix = &s[suffix_start..];
    let (base, exponent) = quantity_suffix(suffix).ok_or_else(|| SUFFIX_MSG.to_string())?;
    let int_part = if int_part.is_empty() { "0" } else { int_part };
    let mantissa: f64 = format!("{int_part}.{frac_part}0")
        .parse()
        .map_err(|_| NUMERIC_MSG.to_string())?;
    let value = mantissa * f64::from(base).powi(exponent);
    if !value.is_finite() {
        return Err(NUMERIC_MSG.into());
    }
    Ok(if negative { -value } else { value })
}

/// (base, exponent) of a quantity suffix.
fn quantity_suffix(suffix: &str) -> Option<(u32, i32)> {
    let decimal = |e: i32| Some((10, e));
    let binary = |e: i32| Some((2, e));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ => {
            let rest = suffix.strip_prefix(['e', 'E'])?;
            let exponent: i32 = rest.parse().ok()?;
            decimal(exponent)
        }
    }
}
