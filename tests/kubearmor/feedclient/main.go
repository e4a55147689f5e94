// feed-client: a client of KubeArmor's LogService written on KubeArmor's published Go package
// (github.com/kubearmor/KubeArmor/protobuf), for armor's tests.
//
//	feed-client ADDR health
//	feed-client ADDR alerts|logs|messages FILTER N
//
// ADDR is HOST:PORT or unix:///PATH. `health` calls HealthCheck with a nonce and the standard
// grpc.health.v1 Check, and prints `nonce=N status=S`. The others watch the stream with the
// filter and print N records, each as one JSON line (encoding/json of KubeArmor's Go type: the
// field names KubeArmor's tools read), then exit. A refused call prints
// `error: CODE: MESSAGE` and exits with status 3.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	pb "github.com/kubearmor/KubeArmor/protobuf"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func fail(err error) {
	if s, ok := status.FromError(err); ok {
		fmt.Printf("error: %s: %s\n", s.Code(), s.Message())
		os.Exit(3)
	}
	fmt.Fprintln(os.Stderr, "feed-client:", err)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: feed-client ADDR health | ADDR alerts|logs|messages FILTER N")
		os.Exit(2)
	}
	conn, err := grpc.NewClient(os.Args[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fail(err)
	}
	defer conn.Close()
	client := pb.NewLogServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if os.Args[2] == "health" {
		reply, err := client.HealthCheck(ctx, &pb.NonceMessage{Nonce: 1234})
		if err != nil {
			fail(err)
		}
		h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "feeder.LogService"})
		if err != nil {
			fail(err)
		}
		fmt.Printf("nonce=%d status=%s\n", reply.Retval, h.Status)
		return
	}
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: feed-client ADDR alerts|logs|messages FILTER N")
		os.Exit(2)
	}
	filter := os.Args[3]
	n, err := strconv.Atoi(os.Args[4])
	if err != nil {
		fail(err)
	}
	req := &pb.RequestMessage{Filter: filter}
	print := func(v any) {
		line, err := json.Marshal(v)
		if err != nil {
			fail(err)
		}
		fmt.Println(string(line))
	}
	switch os.Args[2] {
	case "alerts":
		stream, err := client.WatchAlerts(ctx, req)
		if err != nil {
			fail(err)
		}
		for i := 0; i < n; i++ {
			a, err := stream.Recv()
			if err != nil {
				fail(err)
			}
			print(a)
		}
	case "logs":
		stream, err := client.WatchLogs(ctx, req)
		if err != nil {
			fail(err)
		}
		for i := 0; i < n; i++ {
			l, err := stream.Recv()
			if err != nil {
				fail(err)
			}
			print(l)
		}
	case "messages":
		stream, err := client.WatchMessages(ctx, req)
		if err != nil {
			fail(err)
		}
		for i := 0; i < n; i++ {
			m, err := stream.Recv()
			if err != nil {
				fail(err)
			}
			print(m)
		}
	default:
		fmt.Fprintln(os.Stderr, "feed-client: unknown stream", os.Args[2])
		os.Exit(2)
	}
}
