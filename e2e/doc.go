// Package e2e holds kafkaguard's end-to-end tests: the kafkaguard binary, run
// as a separate process with a YAML config, in front of a real Apache Kafka
// 0.9.0.1 broker (deploy/testing/kafka-0.9.sh) and an in-process three-broker
// kfake cluster, driven by real clients: kcat, kafka-python (Debian's
// python3-kafka, run with /usr/bin/python3) and franz-go.
//
// The tests skip unless KG_E2E=1, so `go test ./...` needs no Java:
//
//	deploy/testing/kafka-0.9.sh start
//	KG_E2E=1 go test -race -count=1 -timeout 30m ./e2e/...
//	deploy/testing/kafka-0.9.sh stop
//
// Brokers the tests kill or crash on purpose are separate instances of the
// same script on their own ports; everything listens on 127.0.0.1 only.
// The package has no non-test code besides this comment.
package e2e
