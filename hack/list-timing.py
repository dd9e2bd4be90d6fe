#!/usr/bin/env python3
"""How long the apiserver takes to hand a client every ActionItem, by the ways a watch can list them.

Run beside a control plane holding many items (e.g. after `make bench BENCH=action_items` created
them), through `kubectl proxy --port=18123`:

    hack/list-timing.py http://127.0.0.1:18123

Prints, for each way: objects, pages (responses), megabytes and seconds. The ways:
- `limit=N&resourceVersion=0&resourceVersionMatch=NotOlderThan`: what kube's watcher asks with
  `any_semantic()` (served from the watch cache; the apiserver ignores the limit).
- `limit=N` without a resourceVersion: a paged consistent list (from etcd), pages of N.
- `watch=1&sendInitialEvents=true`: a streaming list (WatchList), object by object, until the
  bookmark that ends the initial events.
"""
import json
import sys
import time
import urllib.request

PATH = "/apis/kaizen.dev/v1alpha1/actionitems"


def paged(base, limit, any_version):
    t0, n, pages, size, cont = time.time(), 0, 0, 0, None
    while True:
        q = f"?limit={limit}"
        if any_version and not cont:
            q += "&resourceVersion=0&resourceVersionMatch=NotOlderThan"
        if cont:
            q += f"&continue={cont}"
        body = urllib.request.urlopen(base + PATH + q, timeout=600).read()
        size += len(body)
        doc = json.loads(body)
        n, pages = n + len(doc["items"]), pages + 1
        cont = doc["metadata"].get("continue")
        if not cont:
            break
    what = "resourceVersion=0" if any_version else "consistent"
    print(f"list limit={limit} {what}: {n} objects, {pages} responses, {size / 1e6:.0f} MB, {time.time() - t0:.1f} s")


def streamed(base):
    q = "?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
    t0, n = time.time(), 0
    with urllib.request.urlopen(base + PATH + q, timeout=600) as response:
        for line in response:
            event = json.loads(line)
            if event["type"] == "ERROR":
                print(f"streaming list refused: {event['object'].get('message')}")
                return
            if event["type"] == "BOOKMARK":
                annotations = event["object"]["metadata"].get("annotations") or {}
                if annotations.get("k8s.io/initial-events-end") == "true":
                    break
            else:
                n += 1
    print(f"streaming list: {n} objects, {time.time() - t0:.1f} s")


if __name__ == "__main__":
    base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:18123"
    for limit in (100, 500):
        paged(base, limit, any_version=True)
    for limit in (100, 500):
        paged(base, limit, any_version=False)
    streamed(base)
