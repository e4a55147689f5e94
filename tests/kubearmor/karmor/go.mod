module armor.test/karmor

go 1.26.3

require github.com/kubearmor/kubearmor-client v1.4.7
