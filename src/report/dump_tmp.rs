//! Temporary: dumps text renderings for before/after comparison.
#[test]
fn dump_text_samples() {
    use super::sample::*;
    use super::*;
    let (c, _) = sample_comparison();
    let out = [
        render_text(&sample_report()),
        render_comparison_text(&c),
        render_compare_text(&sample_compare()),
        render_compare_text(&sample_compare_other_workload()),
        render_capacity_text(&sample_capacity()),
        render_capacity_text(&sample_capacity_generator()),
    ]
    .join("\n=====\n");
    std::fs::write(
        std::env::var("DUMP_TEXT").unwrap_or("/tmp/ackstorm-text-dump.txt".into()),
        out,
    )
    .unwrap();
}
