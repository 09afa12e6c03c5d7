//! The DPoP reason table of docs/security.md ("DPoP proofs") is what `DpopReason` answers:
//! one row per code, the status and the RFC 9449 error of each.

use jwtd_core::DpopReason;

#[test]
fn the_dpop_table_in_security_md_is_what_dpop_reason_answers() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/security.md");
    let text = std::fs::read_to_string(path).unwrap();
    let section = text
        .split("## DPoP proofs (RFC 9449)")
        .nth(1)
        .expect("the section");
    let section = section.split("\n## ").next().unwrap();
    let rows: Vec<Vec<String>> = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<String> = l
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_owned())
                .collect();
            assert_eq!(cells.len(), 6, "four columns: {l}");
            cells
        })
        .collect();
    assert_eq!(
        rows.len(),
        DpopReason::ALL.len(),
        "one row per code, no other"
    );
    for r in DpopReason::ALL {
        let row = rows
            .iter()
            .find(|c| c[1] == r.as_str())
            .unwrap_or_else(|| panic!("{r}: no row in docs/security.md"));
        assert_eq!(row[2], r.http_status().to_string(), "{r}");
        assert_eq!(row[3], r.error_code(), "{r}");
    }
    // The table lists the codes in `DpopReason::ALL`'s order.
    let order: Vec<&str> = rows.iter().map(|c| c[1].as_str()).collect();
    let declared: Vec<&str> = DpopReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(order, declared);
}
