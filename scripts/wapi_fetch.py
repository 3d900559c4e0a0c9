#!/usr/bin/env python3
"""Fetch this workload's X.509-SVID over the SPIFFE Workload API with py-spiffe (the `spiffe`
package from PyPI, installed into .venv by `make setup`) and print its SPIFFE ID, expiry and
trust bundles: what an application does, with a client svidgate did not write.

The socket comes from SPIFFE_ENDPOINT_SOCKET (`unix:///path/to/socket`), as for every SPIFFE
client. Used by `make demo` and by tests/tests/workload_api_e2e.rs.
"""

import sys

from spiffe import WorkloadApiClient

TIMEOUT_S = 30


def main():
    client = WorkloadApiClient(default_timeout=TIMEOUT_S)
    try:
        ctx = client.fetch_x509_context()
        svid = ctx.default_svid
        leaf = svid.leaf
        print(f"spiffe_id: {svid.spiffe_id}")
        print(f"expires:   {leaf.not_valid_after_utc.isoformat()}")
        print(f"serial:    {leaf.serial_number:x}")
        tds = sorted(str(b.trust_domain) for b in ctx.x509_bundle_set.bundles)
        print(f"bundles:   {', '.join(tds)}")
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
