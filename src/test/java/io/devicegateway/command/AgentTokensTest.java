package io.devicegateway.command;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;

import org.junit.jupiter.api.Test;

import io.devicegateway.testing.Agents;

/** Token scopes match whole device-id segments; a malformed entry stops the start with a message naming it. */
class AgentTokensTest {

    private static AgentTokens.Agent agent(String scope) {
        return AgentTokens.parse(List.of("a:" + Agents.hash("t") + ":" + scope)).authenticate("t").orElseThrow();
    }

    @Test
    void scopeTruckCoversTruckAndIdsContinuingItAfterASeparator() {
        AgentTokens.Agent truck = agent("truck");
        for (String id : List.of("truck", "truck-1", "truck.eu.7", "truck:9", "truck_2")) {
            assertTrue(truck.mayAddress(id), id);
        }
    }

    @Test
    void scopeTruckDoesNotCoverTrucker() {
        AgentTokens.Agent truck = agent("truck");
        for (String id : List.of("trucker-1", "trucks", "truck1", "tru", "xtruck-1", "other")) {
            assertFalse(truck.mayAddress(id), id);
        }
    }

    @Test
    void scopeEndingInASeparatorCoversIdsStartingWithIt() {
        AgentTokens.Agent truck = agent("truck-");
        assertTrue(truck.mayAddress("truck-1"));
        assertTrue(truck.mayAddress("truck-eu.7"));
        assertFalse(truck.mayAddress("truck"), "the scope itself is not an id it covers");
        assertFalse(truck.mayAddress("truck.1"));
        assertFalse(truck.mayAddress("trucker-1"));
        assertTrue(agent("fleet.eu.").mayAddress("fleet.eu.7"));
        assertFalse(agent("fleet.eu.").mayAddress("fleet.europe"));
    }

    @Test
    void anEntryWithoutScopeCoversEveryDevice() {
        AgentTokens.Agent ops = AgentTokens.parse(List.of("ops:" + Agents.hash("t"))).authenticate("t").orElseThrow();
        assertTrue(ops.mayAddress("anything-at-all"));
    }

    @Test
    void anEmptyScopeIsAStartupErrorNotEveryDevice() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> AgentTokens.parse(List.of("ops:" + Agents.hash("ok"), "fleet:" + Agents.hash("secret") + ":")));
        assertTrue(e.getMessage().contains("'fleet'") && e.getMessage().contains("empty device-id scope"),
                e.getMessage());
        assertFalse(e.getMessage().contains(Agents.hash("secret")), "the message never carries the hash");
    }

    @Test
    void aScopeWithCharactersNoDeviceIdHasIsAStartupError() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> AgentTokens.parse(List.of("fleet:" + Agents.hash("t") + ":truck/#")));
        assertTrue(e.getMessage().contains("'truck/#'"), e.getMessage());
    }

    @Test
    void theInterceptorRefusesToStartWithAnEmptyScope() {
        GrpcAuthConfig config = new GrpcAuthConfig() {
            @Override
            public boolean enabled() {
                return true;
            }

            @Override
            public java.util.Optional<List<String>> tokens() {
                return java.util.Optional.of(List.of("fleet:" + Agents.hash("t") + ":"));
            }
        };
        assertThrows(IllegalArgumentException.class, () -> new TokenAuthInterceptor(config));
    }

    @Test
    void aTokenAuthenticatesOnlyItsOwnEntry() {
        AgentTokens tokens = AgentTokens.parse(List.of("ops:" + Agents.hash("a"), "fleet:" + Agents.hash("b") + ":truck"));
        assertEquals("fleet", tokens.authenticate("b").orElseThrow().name());
        assertTrue(tokens.authenticate("c").isEmpty());
    }
}
