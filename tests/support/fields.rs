//! Every field of the serde model, read from the model itself: `T` is deserialized from a
//! deserializer that offers each struct every field it declares (lists with one element, maps with
//! one key `*`), and records `(struct, field)` with the YAML path it was found at.

use std::cell::RefCell;

use serde::de::value::{Error, StrDeserializer};
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

/// One field of one struct of the model, at the first YAML path it was found under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// `TrafficPolicy.tunnel`: Rust struct name, then the field's YAML name.
    pub key: String,
    /// `spec.trafficPolicy.tunnel` (`[]` for a list element, `*` for a map key).
    pub path: String,
}

/// Every `(struct, field)` reachable from `T`, each once, in declaration order.
pub fn fields_of<T: DeserializeOwned>(root: &str) -> Vec<Field> {
    let out = RefCell::new(Vec::new());
    T::deserialize(Tracer {
        out: &out,
        path: root.to_owned(),
    })
    .expect("the model deserializes from the tracer");
    out.into_inner()
}

struct Tracer<'a> {
    out: &'a RefCell<Vec<Field>>,
    path: String,
}

impl<'a> Tracer<'a> {
    fn child(&self, suffix: &str) -> Tracer<'a> {
        Tracer {
            out: self.out,
            path: format!("{}{suffix}", self.path),
        }
    }
}

macro_rules! leaf {
    ($($method:ident => $visit:ident($($value:expr)?)),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
            v.$visit($($value)?)
        })*
    };
}

impl<'de> de::Deserializer<'de> for Tracer<'_> {
    type Error = Error;

    // `yaml_serde::Value` (free-form fields) asks for anything: it is a leaf.
    leaf! {
        deserialize_any => visit_unit(),
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_i64(0),
        deserialize_i16 => visit_i64(0),
        deserialize_i32 => visit_i64(0),
        deserialize_i64 => visit_i64(0),
        deserialize_u8 => visit_u64(0),
        deserialize_u16 => visit_u64(0),
        deserialize_u32 => visit_u64(0),
        deserialize_u64 => visit_u64(0),
        deserialize_f32 => visit_f64(0.0),
        deserialize_f64 => visit_f64(0.0),
        deserialize_char => visit_char('x'),
        deserialize_str => visit_str(""),
        deserialize_string => visit_str(""),
        deserialize_bytes => visit_bytes(&[]),
        deserialize_byte_buf => visit_bytes(&[]),
        deserialize_unit => visit_unit(),
        deserialize_identifier => visit_str(""),
        deserialize_ignored_any => visit_unit(),
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_some(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        v.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_seq(One(Some(self.child("[]"))))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, Error> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        v: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_map(Entries {
            keys: &["*"],
            next: 0,
            parent: self,
            record: None,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        v.visit_map(Entries {
            keys: fields,
            next: 0,
            parent: self,
            record: Some(name),
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Error> {
        Err(de::Error::custom(format!(
            "enum {name}: add it to the tracer"
        )))
    }
}

/// A list of one element.
struct One<'a>(Option<Tracer<'a>>);

impl<'de> de::SeqAccess<'de> for One<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0.take().map(|t| seed.deserialize(t)).transpose()
    }
}

/// The fields of a struct (recorded), or one `*` key of a map.
struct Entries<'a> {
    keys: &'static [&'static str],
    next: usize,
    parent: Tracer<'a>,
    record: Option<&'static str>,
}

impl<'de> de::MapAccess<'de> for Entries<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(key) = self.keys.get(self.next) else {
            return Ok(None);
        };
        let de: StrDeserializer<'_, Error> = key.into_deserializer();
        seed.deserialize(de).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let key = self.keys[self.next];
        self.next += 1;
        let child = self.parent.child(&format!(".{key}"));
        if let Some(name) = self.record {
            let mut out = self.parent.out.borrow_mut();
            let field = Field {
                key: format!("{name}.{key}"),
                path: child.path.clone(),
            };
            if !out.iter().any(|f| f.key == field.key) {
                out.push(field);
            }
        }
        seed.deserialize(child)
    }
}
