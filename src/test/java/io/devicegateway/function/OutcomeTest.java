package io.devicegateway.function;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;

import org.junit.jupiter.api.Test;

/** The outcome API refuses what would corrupt a record: such a refusal, thrown in a function, is function-failed. */
class OutcomeTest {

    @Test
    void deadLetterReasonsFollowTheReasonGrammar() {
        assertEquals("telematics-bad-magic", ((Outcome.DeadLetter) Outcome.deadLetter("telematics-bad-magic")).reason());
        for (String bad : new String[] { null, "", "Bad", "with space", "-leading", "x".repeat(65) }) {
            assertThrows(IllegalArgumentException.class, () -> Outcome.deadLetter(bad), String.valueOf(bad));
        }
    }

    @Test
    void aFunctionCannotSetTheGatewaysOwnHeaders() {
        for (String reserved : List.of("device-id", "reason", "sequence", "content-type", "dedup", "mqtt-user-x")) {
            assertThrows(IllegalArgumentException.class, () -> Outcome.replace().header(reserved, "v"), reserved);
        }
        assertThrows(IllegalArgumentException.class, () -> Outcome.replace().header("ok", null));
    }

    @Test
    void replacementsAreImmutableAndKeepWhatIsNotSet() {
        Outcome.Replace base = Outcome.replace().contentType("application/json");
        Outcome.Replace more = base.header("a", "1").sequence(5);
        assertTrue(base.extraHeaders().isEmpty());
        assertTrue(!base.setsSequence());
        assertNull(more.newPayload(), "payload kept");
        assertEquals("application/json", more.newContentType());
        assertEquals(List.of(new Outcome.Header("a", "1")), more.extraHeaders());
        assertEquals(5, more.newSequence());
        assertThrows(UnsupportedOperationException.class, () -> more.extraHeaders().add(new Outcome.Header("b", "2")));
        assertThrows(IllegalArgumentException.class, () -> Outcome.replace().payload(new byte[0]));
    }
}
