"""The moment a scenario's own work is done, for the runner to measure how
long the exit took after it (conftest.run_scenario reads the END line)."""
import time


def end_of_work(label=""):
    print(f"END {time.time():.6f} {label}".rstrip(), flush=True)
