// Test tools for armor's gRPC feed, built from KubeArmor's upstream Go modules (pinned in
// go.mod) so that armor's compatibility with KubeArmor's wire format is proven by KubeArmor's
// code, not only by armor's: KubeArmor's own client `karmor`
// (`go build github.com/kubearmor/kubearmor-client`) and `feed-client` (./feedclient), a small
// client on KubeArmor's published protobuf Go package. scripts/kubearmor-tools builds both and
// caches them by version; the product never needs Go.

//go:build tools

package tools
