package io.devicegateway.command;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Optional;

/** The configured agent tokens: names, SHA-256 hashes and optional device-id prefixes. */
public final class AgentTokens {

    /** An authenticated agent. */
    public record Agent(String name, String deviceIdPrefix) {
        public boolean mayAddress(String deviceId) {
            return deviceIdPrefix.isEmpty() || deviceId.startsWith(deviceIdPrefix);
        }
    }

    private record Entry(Agent agent, byte[] hash) {
    }

    private final List<Entry> entries;

    private AgentTokens(List<Entry> entries) {
        this.entries = entries;
    }

    /** Parses {@code name:sha256hex[:prefix]} entries; a malformed entry is a startup error naming it. */
    public static AgentTokens parse(List<String> specs) {
        List<Entry> entries = new ArrayList<>();
        for (String spec : specs) {
            String trimmed = spec.trim();
            if (trimmed.isEmpty()) {
                continue;
            }
            String[] parts = trimmed.split(":", 3);
            if (parts.length < 2 || parts[0].isBlank() || !parts[1].matches("[0-9a-fA-F]{64}")) {
                String name = parts[0].isBlank() ? "(unnamed)" : parts[0];
                throw new IllegalArgumentException("gateway.grpc.auth.tokens: entry '" + name
                        + "' must be name:sha256-hex-of-token[:device-id-prefix] (64 hex digits)");
            }
            entries.add(new Entry(new Agent(parts[0], parts.length == 3 ? parts[2] : ""),
                    HexFormat.of().parseHex(parts[1].toLowerCase())));
        }
        return new AgentTokens(List.copyOf(entries));
    }

    public int size() {
        return entries.size();
    }

    /** Compares the token's hash with every entry in constant time (no early exit on a match or a mismatch). */
    public Optional<Agent> authenticate(String token) {
        byte[] hash = sha256(token);
        Agent found = null;
        for (Entry e : entries) {
            if (MessageDigest.isEqual(e.hash(), hash) && found == null) {
                found = e.agent();
            }
        }
        return Optional.ofNullable(found);
    }

    public static byte[] sha256(String token) {
        try {
            return MessageDigest.getInstance("SHA-256").digest(token.getBytes(StandardCharsets.UTF_8));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
