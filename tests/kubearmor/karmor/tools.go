// Test tool for armor's gRPC feed: KubeArmor's own client, `karmor`, built from its upstream Go
// module (github.com/kubearmor/kubearmor-client, pinned in go.mod) so that armor's
// compatibility with KubeArmor's wire format is proven by KubeArmor's code, not only by ours.
// scripts/kubearmor-tools builds it (`go build github.com/kubearmor/kubearmor-client`) and
// caches it by version; the product never needs Go.

//go:build tools

package tools
