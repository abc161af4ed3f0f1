//! Token locations: finding and stripping.

use super::support::*;
use crate::token::{find, strip, Found, TokenSource};
use pwf_shared::HeaderList;

fn bearer_source() -> TokenSource {
    TokenSource::Header {
        name: "authorization".into(),
        prefix: "Bearer ".into(),
    }
}

fn token_of(sources: &[TokenSource], h: &HeaderList) -> Option<(String, usize)> {
    find(sources, h).map(|Found { token, source }| (String::from_utf8(token).unwrap(), source))
}

#[test]
fn header_prefix_is_case_insensitive_and_trimmed() {
    let s = [bearer_source()];
    for (value, expected) in [
        ("Bearer abc.def.ghi", Some("abc.def.ghi")),
        ("bearer abc", Some("abc")),
        ("BEARER abc", Some("abc")),
        ("Bearer    abc  ", Some("abc")),
        ("Bearer \tabc", Some("abc")),
        ("Bearer ", None),
        ("Bearer    ", None),
        ("Bearer", None),
        ("Bearerabc", None),
        ("Basic dXNlcjpwYXNz", None),
        ("abc.def.ghi", None),
        ("", None),
    ] {
        let h = request(&[("authorization", value)]);
        assert_eq!(
            token_of(&s, &h).map(|(t, _)| t).as_deref(),
            expected,
            "{value:?}"
        );
    }
    // Any of several values may carry it.
    let h = request(&[
        ("authorization", "Basic xyz"),
        ("authorization", "Bearer tok"),
    ]);
    assert_eq!(token_of(&s, &h), Some(("tok".into(), 0)));
    // Without a prefix the whole (trimmed) value is the token.
    let custom = [TokenSource::Header {
        name: "x-jwt".into(),
        prefix: String::new(),
    }];
    assert_eq!(
        token_of(&custom, &request(&[("x-jwt", " t.o.k ")])),
        Some(("t.o.k".into(), 0))
    );
}

#[test]
fn query_parameter_is_percent_decoded() {
    let s = [TokenSource::Query("access_token".into())];
    for (path, expected) in [
        ("/p?access_token=a.b.c", Some("a.b.c")),
        ("/p?x=1&access_token=a%2Eb%2ec&y=2", Some("a.b.c")),
        ("/p?access%5Ftoken=tok", Some("tok")),
        ("/p?access_token=a+b", Some("a b")),
        ("/p?access_token=bad%zz%4", Some("bad%zz%4")),
        ("/p?access_token=%2B1", Some("+1")),
        ("/p?access_token=first&access_token=second", Some("first")),
        // an empty value first must not hide a token after it
        ("/p?access_token=&access_token=a.b.c", Some("a.b.c")),
        ("/p?access_token&access_token=a.b.c", Some("a.b.c")),
        ("/p?access_token=", None),
        ("/p?access_token", None),
        ("/p?xaccess_token=tok", None),
        ("/p", None),
        ("/p?", None),
    ] {
        let h = HeaderList::from_pairs([(":path", path)]);
        assert_eq!(
            token_of(&s, &h).map(|(t, _)| t).as_deref(),
            expected,
            "{path}"
        );
    }
}

#[test]
fn cookie_among_several() {
    let s = [TokenSource::Cookie("session".into())];
    for (cookies, expected) in [
        (vec!["a=1; session=tok; b=2"], Some("tok")),
        (vec!["session=tok"], Some("tok")),
        (vec!["a=1;session=tok"], Some("tok")),
        (vec![r#"session="quoted.tok""#], Some("quoted.tok")),
        (
            vec!["a=1", "b=2; session=second-header"],
            Some("second-header"),
        ),
        (vec!["xsession=no; sessionx=no"], None),
        (vec!["session="], None),
        (vec!["session=; session=a.b.c"], Some("a.b.c")),
        (vec![r#"session="""#, "session=a.b.c"], Some("a.b.c")),
        (vec!["a=1"], None),
    ] {
        let pairs: Vec<(&str, &str)> = cookies.iter().map(|c| ("cookie", *c)).collect();
        let h = HeaderList::from_pairs(pairs);
        assert_eq!(
            token_of(&s, &h).map(|(t, _)| t).as_deref(),
            expected,
            "{cookies:?}"
        );
    }
}

#[test]
fn sources_are_tried_in_order() {
    let s = [
        bearer_source(),
        TokenSource::Query("access_token".into()),
        TokenSource::Cookie("session".into()),
    ];
    let all = HeaderList::from_pairs([
        (":path", "/p?access_token=from-query"),
        ("cookie", "session=from-cookie"),
        ("authorization", "Bearer from-header"),
    ]);
    assert_eq!(token_of(&s, &all), Some(("from-header".into(), 0)));
    let no_header = HeaderList::from_pairs([
        (":path", "/p?access_token=from-query"),
        ("cookie", "session=from-cookie"),
        ("authorization", "Basic x"),
    ]);
    assert_eq!(token_of(&s, &no_header), Some(("from-query".into(), 1)));
    let cookie_only = HeaderList::from_pairs([(":path", "/p"), ("cookie", "session=c")]);
    assert_eq!(token_of(&s, &cookie_only), Some(("c".into(), 2)));
    assert_eq!(
        token_of(&s, &HeaderList::from_pairs([(":path", "/p")])),
        None
    );
}

#[test]
fn strip_header_keeps_other_schemes() {
    let mut h = request(&[
        ("authorization", "Basic keep"),
        ("x-other", "1"),
        ("authorization", "bearer drop"),
    ]);
    assert!(strip(&bearer_source(), &mut h));
    assert_eq!(
        h.get_all("authorization").collect::<Vec<_>>(),
        [b"Basic keep"]
    );
    assert_eq!(get(&h, "x-other").as_deref(), Some("1"));
    assert!(!strip(&bearer_source(), &mut h), "nothing left to strip");
}

#[test]
fn strip_query_rewrites_the_path() {
    let s = TokenSource::Query("access_token".into());
    for (path, expected) in [
        ("/p?a=%7E1&access_token=t&b=2", "/p?a=%7E1&b=2"),
        ("/p?access_token=t", "/p"),
        ("/p?access%5Ftoken=t&x", "/p?x"),
        ("/p?access_token=1&access_token=2&z=", "/p?z="),
    ] {
        let mut h = HeaderList::from_pairs([(":method", "GET"), (":path", path)]);
        assert!(strip(&s, &mut h), "{path}");
        assert_eq!(get(&h, ":path").as_deref(), Some(expected), "{path}");
    }
    let mut h = HeaderList::from_pairs([(":path", "/p?a=1")]);
    assert!(!strip(&s, &mut h));
    assert_eq!(get(&h, ":path").as_deref(), Some("/p?a=1"));
    let mut h = HeaderList::from_pairs([(":path", "/p")]);
    assert!(!strip(&s, &mut h));
}

#[test]
fn strip_cookie_rewrites_the_cookie_header() {
    let s = TokenSource::Cookie("session".into());
    let mut h = HeaderList::from_pairs([
        ("cookie", "a=1; session=tok;b=2"),
        ("cookie", "session=again"),
        ("cookie", "c=3"),
    ]);
    assert!(strip(&s, &mut h));
    assert_eq!(
        h.get_all("cookie").collect::<Vec<_>>(),
        [b"a=1; b=2".as_slice(), b"c=3"]
    );
    let mut h = HeaderList::from_pairs([("cookie", "a=1; b=2")]);
    assert!(!strip(&s, &mut h));
    assert_eq!(get(&h, "cookie").as_deref(), Some("a=1; b=2"));
}
