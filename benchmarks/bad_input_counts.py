"""Counts the bad-input cases of the test suite by class (issue 15's corpus): malformed CSV (timeseries), AIS,
ETH/UCY text and BVH; tampered model folders; nonsense options (command-line options and API arguments); colliding,
broken or raising plugins.

The cases are the test ids pytest collects (each parametrization is one case): those of
``tests/test_bad_input_corpus.py`` carry their class in the id (``test_bad_input[csv:empty]``), every other
test with bad-input cases is classed below by its module and function. Nothing runs but pytest's collection.

    python benchmarks/bad_input_counts.py            # a table: class, corpus cases, other cases, total
    python benchmarks/bad_input_counts.py --json     # the same as JSON
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = "tests/test_bad_input_corpus.py"
CLASSES = {"csv": "malformed CSV (timeseries)", "ais": "malformed AIS logs", "eth_ucy": "malformed ETH/UCY text",
           "bvh": "malformed BVH", "model_folder": "tampered model folders", "options": "nonsense options",
           "plugins": "colliding or broken plugins"}

OTHER: dict[str, str] = {  # class -> the other tests with cases of it, as "module function function ..." lines
    "csv": """
        test_timeseries_domain test_all_empty_column_cannot_be_filled test_bad_freq_is_a_config_error
            test_blank_lines_keep_line_numbers_right test_columns_option_and_text_columns_are_ignored_and_reported
            test_duplicated_timestamps_keep_the_last_and_are_counted test_empty_timestamp_counts_as_unparsable
            test_fill_none_raises_naming_column_and_first_line test_infinite_values_are_rejected
            test_irregular_series_needs_freq_and_suggests_the_median test_malformed_csv_rows_and_other_separators
            test_missing_time_column test_nan_gaps_filled_and_counted_per_column
            test_non_numeric_values_name_column_first_line_and_count test_numeric_time_column_is_explained
            test_series_shorter_than_min_length test_unknown_extension_and_missing_file
            test_unparsable_timestamp_names_line_and_value test_unsorted_rows_are_sorted_and_counted
        test_loader_properties test_a_corrupted_series_file_is_read_with_every_row_counted_or_refused
        test_columns_by_name test_other_columns_are_a_one_line_error_listing_both_sets""",
    "ais": """
        test_vessel_domain test_noaa_csv_sample_loads_with_every_anomaly_counted
            test_unavailable_values_invalid_positions_duplicates_unsorted_and_jumps_are_counted
            test_malformed_rows_are_skipped_counted_and_reported_with_line_numbers
            test_missing_columns_name_the_file_and_columns test_single_report_per_vessel_is_counted_not_a_crash
            test_file_errors_and_options test_traj_format_and_malformed_lines
        test_columns_by_name test_the_vessel_loader_says_what_it_read_and_counts_extra_fields""",
    "eth_ucy": """
        test_traffic_domain test_malformed_rows_are_counted_with_line_numbers
            test_missing_columns_are_errors_naming_file_line_and_column
            test_duplicate_frame_agent_rows_keep_the_first_and_are_counted
            test_non_uniform_frame_steps_are_counted_off_grid_and_gaps_split test_single_row_agent_is_counted
            test_loader_errors_for_empty_unknown_and_bad_options test_encoder_and_file_type_errors
        test_loader_properties test_a_corrupted_track_file_is_read_with_every_row_counted_or_refused
        test_columns_by_name test_eth_ucy_rows_with_a_fifth_field_are_counted
            test_a_traffic_model_refuses_data_read_with_other_neighbours""",
    "bvh": """
        test_motion_bvh test_malformed_bvh_names_file_and_line
            test_clips_with_different_skeletons_in_one_data_set_are_refused test_real_clips_of_two_skeletons_are_refused
        test_columns_by_name test_a_bvh_row_with_an_extra_value_names_its_line
            test_a_motion_model_refuses_clips_of_another_skeleton""",
    "model_folder": """
        test_checkpoint test_truncated_safetensors test_flipped_bytes
            test_unparsable_safetensors_with_matching_hash_is_wrapped test_missing_listed_file test_missing_config
            test_garbage_config test_wrong_format test_missing_directory test_load_never_unpickles
            test_restore_optimizer_mismatches test_refuses_to_replace_foreign_directory
        test_finite_or_nothing test_nan_samples_from_a_corrupt_model_are_refused_before_anything_is_written
            test_invalid_calibration_fields_are_named test_unreadable_calibration_files
            test_calibration_is_checksummed_in_the_model_folder test_unrecorded_calibrations_are_refused
            test_config_defaults_are_type_checked_on_load""",
    "options": """
        test_finite_or_nothing test_cli_refuses_bad_guide_scales test_api_refuses_bad_guide_scales
            test_costs_must_be_a_mapping test_a_diverging_guide_within_range_is_an_error_and_writes_nothing
            test_api_arguments_are_checked_where_they_enter test_cli_seed_out_of_range_is_one_line
            test_unwritable_out_is_one_line_naming_the_path test_unwritable_plot_and_failing_writes
        test_vessel_domain test_guide_options_are_checked
        test_reproducible_training test_resume_and_overwrite_mistakes_are_one_line_errors
        test_cli test_user_errors_are_messages_not_tracebacks""",
    "plugins": """
        test_plugin_identity test_two_packages_with_one_domain_name_neither_replaces_the_other
            test_a_third_party_domain_named_like_a_builtin_does_not_replace_it
            test_colliding_cost_names_are_kept_from_both_plugins_and_picked_by_package
            test_colliding_data_set_names_are_errors_naming_both_packages test_trajdiff_plugins_lists_collisions
            test_a_hook_result_of_the_wrong_type_is_reported_exactly_once
            test_a_model_refuses_to_load_with_an_impostor_of_its_domain
        test_plugins test_a_broken_domain_plugin_is_reported_and_the_others_keep_working
            test_a_plugin_whose_commands_hook_raises_adds_nothing_and_the_others_still_work
            test_bad_cost_and_dataset_results_are_reported
            test_entry_points_load_third_party_plugins_and_report_import_failures
            test_unknown_domain_error_mentions_failed_plugins
            test_unknown_hooks_and_bad_signatures_are_rejected_at_registration
        test_cli_errors test_a_plugins_exception_is_one_line_naming_plugin_file_and_message
            test_debug_shows_the_traceback test_python_dash_m_goes_through_the_same_handling""",
}


def rules() -> dict[str, dict[str, str]]:
    """`OTHER` as module path -> test function -> class (a word that is no ``test_`` function names a module)."""
    table: dict[str, dict[str, str]] = {}
    for kind, text in OTHER.items():
        module = ""
        for line in text.split("\n"):
            words = line.split()
            if words and line.startswith("        ") and not line.startswith("            "):
                module, words = f"tests/{words[0]}.py", words[1:]
            for test in words:
                table.setdefault(module, {})[test] = kind
    return table


RULES = rules()


def collect(files: list[str]) -> list[str]:
    """The test ids pytest collects from ``files`` (run from the repository root)."""
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    ids = [line.strip() for line in done.stdout.splitlines() if "::" in line]
    if not ids:
        raise SystemExit(f"pytest collected nothing:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return ids


def classify(ids: list[str]) -> tuple[Counter[str], Counter[str]]:
    """(corpus cases per class, other modules' cases per class)."""
    corpus, other = Counter(), Counter()
    for test_id in ids:
        module, _, test = test_id.partition("::")
        if module == CORPUS:
            found = re.search(r"\[(\w+):", test)
            if found:
                corpus[found.group(1)] += 1
            continue
        kind = RULES.get(module, {}).get(test.split("[")[0])
        if kind:
            other[kind] += 1
    return corpus, other


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    files = [CORPUS, *RULES]
    missing = [name for name in RULES if not (ROOT / name).is_file()]
    if missing:
        raise SystemExit(f"test modules named in RULES are missing: {missing}")
    ids = collect(files)
    corpus, other = classify(ids)
    seen = {(test_id.partition("::")[0], test_id.partition("::")[2].split("[")[0]) for test_id in ids}
    stale = [f"{module}::{test}" for module, tests in RULES.items() for test in tests if (module, test) not in seen]
    if stale:  # a renamed test would silently drop out of the counts
        print(f"warning: no such test (rename it in RULES): {', '.join(stale)}", file=sys.stderr)
    rows = [{"class": kind, "what": what, "corpus": corpus[kind], "other": other[kind],
             "total": corpus[kind] + other[kind]} for kind, what in CLASSES.items()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'class':<14}{'what':<30}{'corpus':>8}{'other':>8}{'total':>8}")
    for row in rows:
        print(f"{row['class']:<14}{row['what']:<30}{row['corpus']:>8}{row['other']:>8}{row['total']:>8}")
    total = sum(corpus.values()) + sum(other.values())
    print(f"{'all':<44}{sum(corpus.values()):>8}{sum(other.values()):>8}{total:>8}")


if __name__ == "__main__":
    main()
