module github.com/corsauthz/corsauthz/deploy/envoy-gateway

go 1.26.7

require (
	github.com/envoyproxy/gateway v1.9.1 // indirect
	go.yaml.in/yaml/v2 v2.4.4 // indirect
	sigs.k8s.io/yaml v1.6.0 // indirect
)
