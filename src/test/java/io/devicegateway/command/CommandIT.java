package io.devicegateway.command;

import io.quarkus.test.junit.QuarkusIntegrationTest;

/** The command black-box tests against the packaged artifact (the jar, or with -Dnative the native executable). */
@QuarkusIntegrationTest
class CommandIT extends CommandTest {
}
