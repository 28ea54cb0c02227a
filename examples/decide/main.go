// Command decide asks corsauthz for one CORS decision through its native
// gRPC API, as a gateway plugin would. Usage: decide [ADDR]
package main

import (
	"context"
	"fmt"
	"log"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	corsauthzv1 "github.com/corsauthz/corsauthz/proto/gen/corsauthz/v1"
)

func main() {
	addr := "127.0.0.1:9001"
	if len(os.Args) > 1 {
		addr = os.Args[1]
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	resp, err := corsauthzv1.NewDecisionServiceClient(conn).Decide(context.Background(), &corsauthzv1.DecideRequest{
		Method: "OPTIONS", Host: "api.example.com", Path: "/v1/orders",
		Origin: "https://app.example.com", AccessControlRequestMethod: "PUT",
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.GetKind(), resp.GetAction(), resp.GetHttpStatus())
	for _, h := range resp.GetHeaders() {
		fmt.Printf("%s: %s\n", h.GetName(), h.GetValue())
	}
}
