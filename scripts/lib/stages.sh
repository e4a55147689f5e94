# Stage timing for scripts/test and scripts/vm-test (sourced).
#
# Every stage appends one tab-separated row to $ARMOR_STAGES (when set):
#   key <TAB> seconds <TAB> result <TAB> detail
# `key` is what scripts/budget.tsv names (e.g. `clippy`, `guest:apparmor:bpflsm`); `result` is
# `ok` or `exit N`; `detail` is free text (a guest's test count). scripts/test prints the rows as
# a table at the end, also when a stage failed, with each stage's budget and a warning for any
# stage over 1.5x its budget.

STAGES_BUDGET_FILE="${STAGES_BUDGET_FILE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/budget.tsv}"

# stage_record KEY SECONDS RESULT [DETAIL]: appends one row (no-op without $ARMOR_STAGES).
stage_record() {
  [ -n "${ARMOR_STAGES:-}" ] || return 0
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-}" >> "$ARMOR_STAGES"
}

# stage_budget KEY: the stage's budget in seconds from the budget file, or nothing.
stage_budget() {
  [ -f "$STAGES_BUDGET_FILE" ] || return 0
  awk -F '\t' -v k="$1" '$1 == k { print $2; exit }' "$STAGES_BUDGET_FILE"
}

# stage_table ROWS_FILE: prints the table of ROWS_FILE, with budgets, then the warnings.
stage_table() {
  local rows="$1"
  [ -s "$rows" ] || return 0
  awk -F '\t' -v budget_file="$STAGES_BUDGET_FILE" '
    BEGIN {
      while ((getline line < budget_file) > 0) {
        if (line ~ /^#/ || line == "") continue
        split(line, f, "\t"); budget[f[1]] = f[2]
      }
      printf "%-34s %8s %8s  %-8s %s\n", "stage", "seconds", "budget", "result", "detail"
    }
    {
      b = ($1 in budget) ? budget[$1] : "-"
      printf "%-34s %8d %8s  %-8s %s\n", $1, $2, b, $3, $4
      if (b != "-" && $2 > 1.5 * b) {
        warn[++n] = sprintf("warning: stage %s took %d s, over 1.5x its budget of %d s (%s)", $1, $2, b, budget_file)
      }
    }
    END { for (i = 1; i <= n; i++) print warn[i] }
  ' "$rows"
}
