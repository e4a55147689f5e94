module armor.test/kubearmor

go 1.26.3

require (
	github.com/kubearmor/KubeArmor/protobuf v0.0.0-20260519072523-d139952ecc8e
	github.com/kubearmor/kubearmor-client v1.4.7
	google.golang.org/grpc v1.80.0
)

require (
	golang.org/x/net v0.54.0 // indirect
	golang.org/x/sys v0.44.0 // indirect
	golang.org/x/text v0.37.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260406210006-6f92a3bedf2d // indirect
	google.golang.org/protobuf v1.36.11 // indirect
)
