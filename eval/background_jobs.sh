# Sourced by the eval/gpu_*.sh scripts that run jobs side by side on one GPU (not run by itself).
#   run_in_background <name> <command...>   the command in the background, output in $out/<name>.log
#   wait_all                                 wait for them all; a failed one prints its log's end;
#                                            returns 1 if any failed, and forgets them all
job_names=() job_pids=()
run_in_background() {
    local name=$1
    shift
    "$@" > "$out/$name.log" 2>&1 &
    job_pids+=($!) job_names+=("$name")
}
wait_all() {
    local i failed=0
    for i in "${!job_pids[@]}"; do
        if ! wait "${job_pids[$i]}"; then
            echo "${job_names[$i]} failed; the end of $out/${job_names[$i]}.log:"
            tail -20 "$out/${job_names[$i]}.log"
            failed=1
        fi
    done
    job_pids=() job_names=()
    return $failed
}
