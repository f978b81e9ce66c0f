package io.devicegateway.ingest;

import io.quarkus.test.junit.QuarkusIntegrationTest;

/** The ingest black-box tests against the packaged artifact (the jar, or with -Dnative the native executable). */
@QuarkusIntegrationTest
class IngestIT extends IngestTest {
}
