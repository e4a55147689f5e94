// Test tool for armor's Kubernetes tests: a real etcd, a real kube-apiserver and a real
// kubelet, built from their upstream Go modules (k8s.io/kubernetes and
// go.etcd.io/etcd/server/v3, pinned in go.mod), in one binary so that one cached build serves
// all three. It is never part of the
// product; scripts/k8s-tools builds it and caches it by the versions in go.mod.
//
//	armor-k8s-testenv etcd [etcd flags]
//	armor-k8s-testenv kube-apiserver [kube-apiserver flags]
//	armor-k8s-testenv kubelet [kubelet flags]
//	armor-k8s-testenv keygen KEY PUB (an ECDSA P-256 key pair, PEM: the service-account keys)
//	armor-k8s-testenv version
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: armor-k8s-testenv etcd|kube-apiserver|kubelet|keygen|version [args]")
		os.Exit(2)
	}
	tool, args := os.Args[1], os.Args[2:]
	if os.Getenv("ARMOR_TESTENV_EXIT_ON_STDIN_EOF") == "1" {
		// The test that started this process holds its stdin: when the test ends, even
		// killed, stdin reaches EOF and nothing is left running.
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			os.Exit(0)
		}()
	}
	switch tool {
	case "etcd":
		etcdmain.Main(append([]string{"etcd"}, args...))
	case "kube-apiserver":
		os.Args = append([]string{"kube-apiserver"}, args...)
		os.Exit(cli.Run(app.NewAPIServerCommand()))
	case "kubelet":
		os.Args = append([]string{"kubelet"}, args...)
		os.Exit(cli.Run(kubelet.NewKubeletCommand(context.Background())))
	case "keygen":
		if len(args) != 2 {
			fmt.Fprintln(os.Stderr, "usage: armor-k8s-testenv keygen KEY PUB")
			os.Exit(2)
		}
		if err := keygen(args[0], args[1]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "version":
		fmt.Println("armor-k8s-testenv: etcd, kube-apiserver and kubelet from k8s.io/kubernetes and go.etcd.io/etcd/server/v3 as pinned in go.mod")
	default:
		fmt.Fprintf(os.Stderr, "unknown tool %q: etcd, kube-apiserver, kubelet, keygen or version\n", tool)
		os.Exit(2)
	}
}

// keygen writes a new ECDSA P-256 private key to key (PKCS#8 PEM, readable by its owner only)
// and its public key to pub (PKIX PEM).
func keygen(key, pub string) error {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return err
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	pubDer, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return err
	}
	return os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDer}), 0o644)
}
