# for_each items are units, each journalled: a retry runs only the item that failed, items
# after a failed one do not start, and a resume (from a journal compacted every 5 records)
# runs the failed item and the rest, not those done.  (At most `concurrency` at once:
# tests/exec/programs.sh.)
not listed: seen
RUNBOOK_TEST_COMPACT_RECORDS=5 run -p dir=$DIR tests/exec/foreach.yaml
touch: $DIR/fixed
resume $RUN
