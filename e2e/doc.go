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
//
// With KG_E2E_KAFKA4=1 the TestKafka4* tests run against a 3-node Apache
// Kafka 4 cluster (KRaft) from deploy/testing/kafka-4.sh on 127.0.0.1:29092-29094
// (KG_E2E_KAFKA4_PORT for another first port, e.g. a 3.9.1 cluster): the Java
// client (testdata/Kafka4Client.java, compiled by the test), confluent-kafka
// and kafka-python 3 (testdata/kafka4_python_client.py, in the venv at
// KG_PYTHON, default /tmp/kafkaguard-pyvenv/bin/python), kafkajs
// (testdata/kafkajs, npm ci), franz-go and kcat through kafkaguard; the
// declared-size incident on Kafka 4; a leader move under running clients; and
// the ApiVersions kafkaguard passes on.
//
// To chase a flaky run: KG_E2E_KEEP_LOGS=DIR keeps every kafkaguard's whole
// log in DIR (the test's own copy goes with its temporary directory), and
// KG_CLIENT_DEBUG=FILE makes the kafka-python 3 client log its group
// coordinator and every request and response at DEBUG into FILE, and kafkajs
// log at DEBUG into FILE.
package e2e
