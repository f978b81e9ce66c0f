package io.devicegateway.session;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

import jakarta.inject.Inject;

import org.awaitility.Awaitility;
import org.junit.jupiter.api.Test;

import io.devicegateway.testing.Devices;
import io.devicegateway.testing.SharedServers;
import io.quarkus.test.common.QuarkusTestResource;
import io.quarkus.test.junit.QuarkusTest;

/** The presence ordering rule, applied by the real Redis script: late, repeated or retained events never win. */
@QuarkusTest
@QuarkusTestResource(value = SharedServers.class, restrictToAnnotatedClass = false)
class PresenceOrderingTest {

    @Inject
    SessionStore store;

    private SessionRecord applyAndRead(PresenceUpdate update) throws Exception {
        store.applyPresence(update);
        Awaitility.await().atMost(Duration.ofSeconds(10)).until(() -> store.pending() == 0);
        // the flush that took it may still be in flight: read until the store answers with a record
        return Awaitility.await().atMost(Duration.ofSeconds(10)).until(() -> read(update.deviceId()),
                Optional::isPresent).get();
    }

    private Optional<SessionRecord> read(String id) throws Exception {
        return store.get(id).toCompletionStage().toCompletableFuture().get(5, TimeUnit.SECONDS);
    }

    @Test
    void aStaleEventArrivingLateDoesNotOverwriteANewerOne() throws Exception {
        String id = Devices.uniqueId("late");
        store.applyPresence(new PresenceUpdate(id, false, 2_000, 2, "a", false));
        Awaitility.await().atMost(Duration.ofSeconds(10)).until(() -> read(id).map(r -> r.version() == 2_000).orElse(false));
        store.applyPresence(new PresenceUpdate(id, true, 1_000, 1, "b", false)); // older, arrives later
        Awaitility.await().atMost(Duration.ofSeconds(10)).until(() -> store.pending() == 0);
        Awaitility.await().during(Duration.ofMillis(500)).atMost(Duration.ofSeconds(5))
                .until(() -> read(id).map(r -> !r.online() && r.version() == 2_000).orElse(false));
    }

    @Test
    void theSameEventTwiceChangesNothing() throws Exception {
        String id = Devices.uniqueId("twice");
        SessionRecord first = applyAndRead(new PresenceUpdate(id, true, 5_000, 5, "a", false));
        store.applyPresence(new PresenceUpdate(id, true, 5_000, 9, "b", false));
        Awaitility.await().during(Duration.ofMillis(500)).atMost(Duration.ofSeconds(5))
                .until(() -> read(id).map(r -> r.connectedAtMs() == first.connectedAtMs() && r.gateway().equals("a"))
                        .orElse(false));
    }

    @Test
    void aRetainedOnlineOnlyBootstrapsAnUnknownDevice() throws Exception {
        String id = Devices.uniqueId("retained");
        SessionRecord bootstrapped = applyAndRead(new PresenceUpdate(id, true, 1_000, 1, "a", true));
        assertTrue(bootstrapped.online(), "unknown device: the retained status is all we know");
        applyAndRead(new PresenceUpdate(id, false, 2_000, 2, "a", false));
        // the broker re-delivers the retained "online" (e.g. on resubscribe) with a newer receipt version
        store.applyPresence(new PresenceUpdate(id, true, 3_000, 3, "a", true));
        Awaitility.await().atMost(Duration.ofSeconds(10)).until(() -> store.pending() == 0);
        Awaitility.await().during(Duration.ofMillis(500)).atMost(Duration.ofSeconds(5))
                .until(() -> read(id).map(r -> !r.online()).orElse(false));
        SessionRecord live = applyAndRead(new PresenceUpdate(id, true, 4_000, 4, "a", false));
        assertTrue(live.online());
        assertEquals(4_000, live.version());
    }

    @Test
    void pendingUpdatesForOneDeviceCoalesceToTheNewest() {
        PresenceUpdate old = new PresenceUpdate("d", true, 1, 1, "a", false);
        PresenceUpdate newer = new PresenceUpdate("d", false, 2, 2, "a", false);
        PresenceUpdate retained = new PresenceUpdate("d", true, 3, 3, "a", true);
        assertEquals(newer, newer.newer(old));
        assertEquals(newer, old.newer(newer));
        assertEquals(newer, retained.newer(newer), "a live event beats a retained copy");
        assertFalse(newer.newer(retained).retained());
    }
}
