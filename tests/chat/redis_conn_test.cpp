// The Redis connection layer's pure parts: URLs, the fields of a payload and Cluster hash
// slots. Its behaviour over real connections is tested by tests/chat/redis_*_test.py
// against redis-server.

#include "../../src/chat/redis_conn.hpp"

#include <gtest/gtest.h>

using tongdao::chat::redis::keySlot;
using tongdao::chat::redis::parseTopology;
using tongdao::chat::redis::parseUrl;
using tongdao::chat::redis::splitFields;
using tongdao::chat::redis::Topology;

TEST(RedisUrl, HostPortAndDefaults) {
    auto ep = parseUrl("redis://10.0.0.5:6380");
    EXPECT_EQ(ep.host, "10.0.0.5");
    EXPECT_EQ(ep.port, 6380);
    EXPECT_EQ(ep.db, 0);
    EXPECT_TRUE(ep.user.empty());
    EXPECT_TRUE(ep.password.empty());
    ep = parseUrl("redis://cache.internal");
    EXPECT_EQ(ep.host, "cache.internal");
    EXPECT_EQ(ep.port, 6379);
    ep = parseUrl("127.0.0.1:7000"); // a bare host:port, as --redis-cluster takes them
    EXPECT_EQ(ep.host, "127.0.0.1");
    EXPECT_EQ(ep.port, 7000);
    ep = parseUrl("redis://[::1]:6379/2");
    EXPECT_EQ(ep.host, "::1");
    EXPECT_EQ(ep.db, 2);
}

TEST(RedisUrl, Credentials) {
    auto ep = parseUrl("redis://:s3cret@h:1/3");
    EXPECT_EQ(ep.user, "");
    EXPECT_EQ(ep.password, "s3cret");
    EXPECT_EQ(ep.db, 3);
    ep = parseUrl("redis://app:p%40ss%3Aword@h:1");
    EXPECT_EQ(ep.user, "app");
    EXPECT_EQ(ep.password, "p@ss:word");
    ep = parseUrl("redis://onlypass@h:1");
    EXPECT_EQ(ep.password, "onlypass");
}

TEST(RedisUrl, RefusesWhatItCannotUse) {
    EXPECT_THROW(parseUrl("rediss://h:6379"), std::invalid_argument);
    EXPECT_THROW(parseUrl("http://h:6379"), std::invalid_argument);
    EXPECT_THROW(parseUrl("redis://h:0"), std::invalid_argument);
    EXPECT_THROW(parseUrl("redis://h:65536"), std::invalid_argument);
    EXPECT_THROW(parseUrl("redis://h:12x"), std::invalid_argument);
    EXPECT_THROW(parseUrl("redis://h:1/db"), std::invalid_argument);
    EXPECT_THROW(parseUrl("redis://h:1/-1"), std::invalid_argument);
}

TEST(RedisTopology, StandaloneIsTheUrl) {
    const auto t = parseTopology("redis://:pw@10.0.0.5:6380/2");
    EXPECT_EQ(t.kind, Topology::Kind::standalone);
    ASSERT_EQ(t.seeds.size(), 1u);
    EXPECT_EQ(t.seeds[0].host, "10.0.0.5");
    EXPECT_EQ(t.seeds[0].password, "pw");
    EXPECT_EQ(t.seeds[0].db, 2);
}

TEST(RedisTopology, SentinelsMasterAndTheMastersCredentials) {
    auto t = parseTopology("redis-sentinel://app:p%40ss@10.0.0.1:26380,10.0.0.2,[::1]:26381/3#orders");
    EXPECT_EQ(t.kind, Topology::Kind::sentinel);
    EXPECT_EQ(t.master, "orders");
    ASSERT_EQ(t.seeds.size(), 3u);
    EXPECT_EQ(t.seeds[0].host, "10.0.0.1");
    EXPECT_EQ(t.seeds[0].port, 26380);
    EXPECT_EQ(t.seeds[1].host, "10.0.0.2");
    EXPECT_EQ(t.seeds[1].port, 26379); // Sentinel's own default
    EXPECT_EQ(t.seeds[2].host, "::1");
    EXPECT_EQ(t.seeds[2].port, 26381);
    for (const auto& s : t.seeds) EXPECT_TRUE(s.password.empty()) << "Sentinels are asked without the master's password";
    EXPECT_EQ(t.credentials.user, "app");
    EXPECT_EQ(t.credentials.password, "p@ss");
    EXPECT_EQ(t.credentials.db, 3);
    EXPECT_TRUE(t.credentials.host.empty());
    t = parseTopology("redis-sentinel://s1#m");
    ASSERT_EQ(t.seeds.size(), 1u);
    EXPECT_EQ(t.seeds[0].host, "s1");
    EXPECT_EQ(t.credentials.db, 0);
    EXPECT_TRUE(t.credentials.password.empty());
}

TEST(RedisTopology, RefusesWhatItCannotUse) {
    EXPECT_THROW(parseTopology("redis-sentinel://s1:26379"), std::invalid_argument);  // no master name
    EXPECT_THROW(parseTopology("redis-sentinel://s1:26379#"), std::invalid_argument); // an empty one
    EXPECT_THROW(parseTopology("redis-sentinel://s1,,s2#m"), std::invalid_argument);
    EXPECT_THROW(parseTopology("redis-sentinel://#m"), std::invalid_argument);
    EXPECT_THROW(parseTopology("redis-sentinel://s1:0#m"), std::invalid_argument);
    EXPECT_THROW(parseTopology("redis-sentinel://s1/x#m"), std::invalid_argument);
    EXPECT_THROW(parseTopology("rediss://h:6379"), std::invalid_argument);
}

TEST(RedisFields, SplitsAtTheFirstSeparatorsAndKeepsTheRest) {
    std::vector<std::string_view> f;
    ASSERT_TRUE(splitFields("mymaster 10.0.0.1 6379 10.0.0.2 6380", ' ', 4, f));
    EXPECT_EQ(f, (std::vector<std::string_view>{"mymaster", "10.0.0.1", "6379", "10.0.0.2", "6380"}));
    ASSERT_TRUE(splitFields("E\n1\nbody with\nnewlines", '\n', 2, f));
    EXPECT_EQ(f, (std::vector<std::string_view>{"E", "1", "body with\nnewlines"}));
    ASSERT_TRUE(splitFields("a,,b,", ',', 3, f));
    EXPECT_EQ(f, (std::vector<std::string_view>{"a", "", "b", ""}));
    ASSERT_TRUE(splitFields("", ',', 0, f));
    EXPECT_EQ(f, (std::vector<std::string_view>{""}));
    EXPECT_FALSE(splitFields("a b", ' ', 2, f)) << "fewer separators than asked";
}

TEST(RedisSlot, AsRedisClusterComputesThem) {
    // Values from `redis-cli CLUSTER KEYSLOT` (Redis 7.0), and the CRC16/XMODEM check value.
    EXPECT_EQ(keySlot("123456789"), 12739);
    EXPECT_EQ(keySlot("foo"), 12182);
    EXPECT_EQ(keySlot("td:{lobby}:x"), 10294);
}

TEST(RedisSlot, HashTags) {
    // Every key of a room hashes by the room's name alone.
    EXPECT_EQ(keySlot("td:{lobby}"), keySlot("lobby"));
    EXPECT_EQ(keySlot("td:{lobby}:e"), keySlot("td:{lobby}:m"));
    // An empty tag is no tag: the whole key counts; only the first {...} is a tag. The
    // numbers are redis-cli CLUSTER KEYSLOT's.
    EXPECT_EQ(keySlot("a{}b"), 13694);
    EXPECT_EQ(keySlot("{}x"), 10595);
    EXPECT_EQ(keySlot("{a}{b}"), 15495);
    EXPECT_EQ(keySlot("a"), 15495);
    EXPECT_EQ(keySlot("x{a"), 6541);
    EXPECT_EQ(keySlot(""), 0);
}
