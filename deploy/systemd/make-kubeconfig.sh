#!/bin/sh
# Writes the kubeconfig of l3lb on a systemd host (deploy/l3lb.service): the API server and CA of
# your current kubectl context, and the token of ServiceAccount l3lb-system/l3lb-host, which may
# do what l3lb does and nothing else (deploy/base/rbac.yaml, deploy/systemd/rbac.yaml).
#
#   kubectl apply -f deploy/base/namespace.yaml -f deploy/base/crd.yaml -f deploy/base/rbac.yaml \
#     -f deploy/systemd/rbac.yaml
#   sh deploy/systemd/make-kubeconfig.sh /etc/l3lb/kubeconfig    # as root, on each host
#
# SERVER overrides the API server address (default: the current context's).
set -eu

out=${1:-/etc/l3lb/kubeconfig}
ns=l3lb-system
secret=l3lb-host-token

server=${SERVER:-$(kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.server}')}
[ -n "$server" ] || { echo "no API server in the current kubectl context; set SERVER" >&2; exit 1; }

# The token controller fills the Secret shortly after it is created.
token=
for _ in 1 2 3 4 5 6 7 8 9 10; do
  token=$(kubectl -n "$ns" get secret "$secret" -o jsonpath='{.data.token}' | base64 -d)
  [ -n "$token" ] && break
  sleep 1
done
[ -n "$token" ] || { echo "secret $ns/$secret has no token; applied deploy/systemd/rbac.yaml?" >&2; exit 1; }

umask 077
mkdir -p "$(dirname "$out")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
kubectl -n "$ns" get secret "$secret" -o jsonpath='{.data.ca\.crt}' | base64 -d > "$tmp/ca.crt"

cfg="$tmp/kubeconfig"
if [ -s "$tmp/ca.crt" ]; then
  KUBECONFIG=$cfg kubectl config set-cluster l3lb --server="$server" \
    --certificate-authority="$tmp/ca.crt" --embed-certs=true >/dev/null
else
  KUBECONFIG=$cfg kubectl config set-cluster l3lb --server="$server" >/dev/null
fi
KUBECONFIG=$cfg kubectl config set-credentials l3lb-host --token="$token" >/dev/null
# The context's namespace is where l3lb elects its allocator (the Lease l3lb-allocator).
KUBECONFIG=$cfg kubectl config set-context l3lb --cluster=l3lb --user=l3lb-host \
  --namespace="$ns" >/dev/null
KUBECONFIG=$cfg kubectl config use-context l3lb >/dev/null
mv "$cfg" "$out"
echo "wrote $out (ServiceAccount $ns/l3lb-host, server $server)"
