//! S3 event notifications as they arrive on SQS: straight from S3
//! (`{"Records": [...]}`, keys URL-encoded with `+` for a space), through
//! an SNS topic (the same, inside an SNS envelope) or through EventBridge
//! (`"detail-type": "Object Created"`). Only object-created events name
//! work; S3's `s3:TestEvent` and every other kind are recognised so they
//! can be deleted.
//!
//! An event's size and time are not the version: the receiver asks S3 for
//! the object itself (a later write may have replaced it, events arrive
//! out of order), so a version found by an event is the same version a
//! listing finds.

use serde_json::Value;

/// What one message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Objects were created (one per record).
    Created(Vec<CreatedKey>),
    /// S3's test event, sent when a notification is set up.
    Test,
    /// Another kind of S3 event (a removal, a restore, …): no work.
    Other(String),
    /// Not an S3 event notification at all.
    Unknown,
}

/// A key an object-created event names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedKey {
    /// The key, URL-decoded.
    pub key: String,
    /// The key as the event wrote it (EventBridge does not encode keys;
    /// where decoding finds no object, this one is tried).
    pub raw: String,
}

impl CreatedKey {
    fn new(raw: &str) -> CreatedKey {
        CreatedKey {
            key: url_decode(raw),
            raw: raw.to_string(),
        }
    }
}

/// Reads one SQS message body.
pub fn parse(body: &str) -> Notice {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return Notice::Unknown;
    };
    // Through SNS: the notification is the envelope's Message, as text.
    if v.get("Type").and_then(Value::as_str) == Some("Notification")
        && let Some(inner) = v.get("Message").and_then(Value::as_str)
    {
        return parse(inner);
    }
    if v.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Notice::Test;
    }
    if let Some(records) = v.get("Records").and_then(Value::as_array) {
        let mut keys = Vec::new();
        let mut other = None;
        for r in records {
            let name = r.get("eventName").and_then(Value::as_str).unwrap_or("");
            let key = r
                .pointer("/s3/object/key")
                .and_then(Value::as_str)
                .filter(|k| !k.is_empty());
            match key {
                Some(k) if name.starts_with("ObjectCreated:") => keys.push(CreatedKey::new(k)),
                _ => other = Some(name.to_string()),
            }
        }
        return match (keys.is_empty(), other) {
            (false, _) => Notice::Created(keys),
            (true, Some(name)) => Notice::Other(name),
            (true, None) => Notice::Unknown,
        };
    }
    if v.get("source").and_then(Value::as_str) == Some("aws.s3") {
        let kind = v.get("detail-type").and_then(Value::as_str).unwrap_or("");
        let key = v
            .pointer("/detail/object/key")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty());
        return match key {
            Some(k) if kind == "Object Created" => Notice::Created(vec![CreatedKey::new(k)]),
            _ => Notice::Other(kind.to_string()),
        };
    }
    Notice::Unknown
}

/// Decodes a key as S3 encodes it in notifications: `+` is a space and
/// `%XX` a byte; a `%` not followed by two hex digits stays as it is.
pub fn url_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', h, l]) => hex(*h).zip(hex(*l)).map(|(h, l)| h * 16 + l),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_decoded_as_s3_encodes_them() {
        assert_eq!(url_decode("in/a+b%2C+%C3%A9t%C3%A9.csv"), "in/a b, été.csv");
        assert_eq!(url_decode("100%25"), "100%");
        assert_eq!(url_decode("bad%zz%4"), "bad%zz%4");
        assert_eq!(url_decode("%"), "%");
    }

    #[test]
    fn every_shape_of_notification_is_read() {
        let direct = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"object":{"key":"in/a+b.csv","size":3}}}]}"#;
        assert_eq!(
            parse(direct),
            Notice::Created(vec![CreatedKey {
                key: "in/a b.csv".into(),
                raw: "in/a+b.csv".into()
            }])
        );
        let sns = serde_json::json!({"Type": "Notification", "Message": direct}).to_string();
        assert_eq!(parse(&sns), parse(direct));
        let bridge = r#"{"version":"0","detail-type":"Object Created","source":"aws.s3","detail":{"object":{"key":"in/x.csv","size":5}}}"#;
        assert_eq!(
            parse(bridge),
            Notice::Created(vec![CreatedKey {
                key: "in/x.csv".into(),
                raw: "in/x.csv".into()
            }])
        );
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-01-01T00:00:00Z","Bucket":"b"}"#;
        assert_eq!(parse(test), Notice::Test);
        let removed = r#"{"Records":[{"eventName":"ObjectRemoved:Delete","s3":{"object":{"key":"in/a.csv"}}}]}"#;
        assert_eq!(parse(removed), Notice::Other("ObjectRemoved:Delete".into()));
        let deleted =
            r#"{"detail-type":"Object Deleted","source":"aws.s3","detail":{"object":{"key":"k"}}}"#;
        assert_eq!(parse(deleted), Notice::Other("Object Deleted".into()));
        assert_eq!(parse("{}"), Notice::Unknown);
        assert_eq!(parse("not json"), Notice::Unknown);
    }
}
