//! The embedded Kubernetes v1.33 definitions (see `data/README.md` for their provenance).
//!
//! The zlib-compressed JSON is part of the binary; it is inflated and parsed once, on first use.
//! Each definition is parsed from a borrowed slice of the inflated text, so the peak memory is
//! the text plus one definition, not a `serde_json::Value` of the whole document.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_json::value::RawValue;
use serde_json::Value;

use crate::schema::Schema;
use crate::{Error, Result};

static COMPRESSED: &[u8] = include_bytes!("../data/v1.33-definitions.json.zlib");

/// Upper bound of the inflated size (the real one is 1,429,369 bytes).
const MAX_INFLATED: usize = 16 << 20;

static BUILTIN: LazyLock<Result<Schema>> = LazyLock::new(load);

pub(crate) fn builtin() -> Result<&'static Schema> {
    BUILTIN.as_ref().map_err(Clone::clone)
}

#[derive(serde::Deserialize)]
struct Document<'a> {
    #[serde(rename = "$defs", borrow)]
    defs: BTreeMap<&'a str, &'a RawValue>,
}

/// Inflates and parses the embedded definitions into a fresh [`Schema`].
pub(crate) fn load() -> Result<Schema> {
    let text = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(COMPRESSED, MAX_INFLATED)
        .map_err(|e| Error::CorruptData(format!("inflate: {e:?}")))?;
    let doc: Document<'_> = serde_json::from_slice(&text).map_err(|e| Error::CorruptData(e.to_string()))?;
    let mut schema = Schema::new();
    // Parse in chunks so only a few definitions exist as `Value` at a time; references across
    // chunks resolve because every name is registered up front.
    let mut all: Vec<(&str, Value)> = Vec::new();
    let names: Vec<(&str, &RawValue)> = doc.defs.into_iter().collect();
    schema.register_names(names.iter().map(|(n, _)| *n));
    for chunk in names.chunks(64) {
        all.clear();
        for (name, raw) in chunk {
            let mut value: Value =
                serde_json::from_str(raw.get()).map_err(|e| Error::CorruptData(e.to_string()))?;
            fix_builtin(name, &mut value);
            all.push((name, value));
        }
        let batch: Vec<(&str, &Value)> = all.iter().map(|(n, v)| (*n, v)).collect();
        schema.add_parsed(&batch, true)?;
    }
    Ok(schema)
}

/// Restores what upstream publishes and the JSON Schema conversion lost.
fn fix_builtin(name: &str, value: &mut Value) {
    let description = match name {
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => INT_OR_STRING_DESCRIPTION,
        "io.k8s.apimachinery.pkg.api.resource.Quantity" => QUANTITY_DESCRIPTION,
        _ => return,
    };
    if let Value::Object(obj) = value {
        obj.entry("description").or_insert_with(|| Value::from(description));
    }
}

const INT_OR_STRING_DESCRIPTION: &str = "IntOrString is a type that can hold an int32 or a string.  When used in JSON or YAML marshalling and unmarshalling, it produces or consumes the inner type.  This allows you to have, for example, a JSON field that can accept a name or number.";

const QUANTITY_DESCRIPTION: &str = "Quantity is a fixed-point representation of a number. It provides convenient marshaling/unmarshaling in JSON and YAML, in addition to String() and AsInt64() accessors.\n\nThe serialization format is:\n\n``` <quantity>        ::= <signedNumber><suffix>\n\n\t(Note that <suffix> may be empty, from the \"\" case in <decimalSI>.)\n\n<digit>           ::= 0 | 1 | ... | 9 <digits>          ::= <digit> | <digit><digits> <number>          ::= <digits> | <digits>.<digits> | <digits>. | .<digits> <sign>            ::= \"+\" | \"-\" <signedNumber>    ::= <number> | <sign><number> <suffix>          ::= <binarySI> | <decimalExponent> | <decimalSI> <binarySI>        ::= Ki | Mi | Gi | Ti | Pi | Ei\n\n\t(International System of units; See: http://physics.nist.gov/cuu/Units/binary.html)\n\n<decimalSI>       ::= m | \"\" | k | M | G | T | P | E\n\n\t(Note that 1024 = 1Ki but 1000 = 1k; I didn't choose the capitalization.)\n\n<decimalExponent> ::= \"e\" <signedNumber> | \"E\" <signedNumber> ```\n\nNo matter which of the three exponent forms is used, no quantity may represent a number greater than 2^63-1 in magnitude, nor may it have more than 3 decimal places. Numbers larger or more precise will be capped or rounded up. (E.g.: 0.1m will rounded up to 1m.) This may be extended in the future if we require larger or smaller quantities.\n\nWhen a Quantity is parsed from a string, it will remember the type of suffix it had, and will use the same type again when it is serialized.\n\nBefore serializing, Quantity will be put in \"canonical form\". This means that Exponent/suffix will be adjusted up or down (with a corresponding increase or decrease in Mantissa) such that:\n\n- No precision is lost - No fractional digits will be emitted - The exponent (or suffix) is as large as possible.\n\nThe sign will be omitted unless the number is negative.\n\nExamples:\n\n- 1.5 will be serialized as \"1500m\" - 1.5Gi will be serialized as \"1536Mi\"\n\nNote that the quantity will NEVER be internally represented by a floating point number. That is the whole point of this exercise.\n\nNon-canonical values will still parse as long as they are well formed, but will be re-emitted in their canonical form. (So always use canonical form, or don't diff.)\n\nThis format is intended to make it difficult to use these numbers without writing some sort of special handling code in the hopes that that will cause implementors to also use a fixed point implementation.";
