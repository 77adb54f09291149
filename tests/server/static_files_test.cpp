// Static files under a root: index files, content types, HEAD, and every way of reaching
// outside the root (dot segments, encoded dots, symbolic links) refused.
#include "support/server_harness.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace tongdao::test {
namespace {

namespace fs = std::filesystem;

/** A temporary tree: base/secret.txt outside, base/root/ served at /static/. */
class StaticFiles : public ::testing::Test {
protected:
    void SetUp() override {
        std::string tmpl = (fs::temp_directory_path() / "tongdao-static-XXXXXX").string();
        ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
        base_ = tmpl;
        root_ = base_ / "root";
        fs::create_directories(root_ / "sub");
        write(base_ / "secret.txt", "top secret\n");
        write(root_ / "index.html", "<!doctype html><title>tongdao</title>\n");
        write(root_ / "style.css", "body { margin: 0 }\n");
        write(root_ / "app.js", "console.log('hi');\n");
        write(root_ / "data.bin", std::string("\x00\x01\x02", 3));
        write(root_ / "hello world.txt", "spaced\n");
        write(root_ / "sub" / "index.html", "<p>sub</p>\n");
        fs::create_symlink(base_ / "secret.txt", root_ / "leak.txt");
        fs::create_directory_symlink(base_, root_ / "up");
        fs::create_symlink(root_ / "style.css", root_ / "alias.css");
        ts_.server.serveStatic("/static", root_);
        port_ = ts_.start();
    }
    void TearDown() override {
        ts_.stop();
        std::error_code ec;
        fs::remove_all(base_, ec);
    }
    static void write(const fs::path& p, std::string_view content) {
        std::ofstream out(p, std::ios::binary);
        out.write(content.data(), static_cast<std::streamsize>(content.size()));
    }
    std::optional<HttpReply> get(std::string_view target, std::string_view method = "GET") {
        WsClient c(port_);
        return c.request(requestText(target, {}, method), method == "HEAD");
    }
    /** Refused (400 or 404), and the secret's bytes nowhere in the answer. */
    void expectRefused(std::string_view target) {
        const auto r = get(target);
        ASSERT_TRUE(r) << target;
        EXPECT_TRUE(r->status == 400 || r->status == 404) << target << " answered " << r->status;
        EXPECT_EQ(r->body.find("top secret"), std::string::npos) << target;
    }

    fs::path base_, root_;
    TestServer ts_;
    std::uint16_t port_ = 0;
};

TEST_F(StaticFiles, DirectoryServesItsIndex) {
    const auto r = get("/static/");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "<!doctype html><title>tongdao</title>\n");
    EXPECT_EQ(r->header("Content-Type"), "text/html; charset=utf-8");
    const auto sub = get("/static/sub/");
    ASSERT_TRUE(sub);
    EXPECT_EQ(sub->body, "<p>sub</p>\n");
    const auto file = get("/static/index.html");
    ASSERT_TRUE(file);
    EXPECT_EQ(file->status, 200);
}

TEST_F(StaticFiles, ContentTypesByExtension) {
    const auto css = get("/static/style.css");
    ASSERT_TRUE(css);
    EXPECT_EQ(css->status, 200);
    EXPECT_EQ(css->body, "body { margin: 0 }\n");
    EXPECT_EQ(css->header("Content-Type"), "text/css; charset=utf-8");
    const auto js = get("/static/app.js");
    ASSERT_TRUE(js);
    EXPECT_EQ(js->body, "console.log('hi');\n");
    EXPECT_EQ(js->header("Content-Type"), "text/javascript; charset=utf-8");
    const auto bin = get("/static/data.bin");
    ASSERT_TRUE(bin);
    EXPECT_EQ(bin->body, std::string("\x00\x01\x02", 3));
    EXPECT_EQ(bin->header("Content-Type"), "application/octet-stream");
}

TEST_F(StaticFiles, PercentEncodedNamesAreDecoded) {
    const auto r = get("/static/hello%20world.txt");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "spaced\n");
    const auto bad = get("/static/%zz");
    ASSERT_TRUE(bad);
    EXPECT_EQ(bad->status, 400);
    const auto nul = get("/static/index.html%00.css");
    ASSERT_TRUE(nul);
    EXPECT_EQ(nul->status, 400);
}

TEST_F(StaticFiles, HeadHasTheLengthButNoBody) {
    WsClient c(port_);
    const auto r = c.request(requestText("/static/style.css", {}, "HEAD"), true);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->header("Content-Length"), "19");
    EXPECT_FALSE(c.readSome(200ms));
    EXPECT_EQ(c.raw(), "");
}

TEST_F(StaticFiles, MissingFileIs404) {
    const auto r = get("/static/nope.html");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404);
    const auto outside = get("/elsewhere/style.css");
    ASSERT_TRUE(outside);
    EXPECT_EQ(outside->status, 404);
}

TEST_F(StaticFiles, DotDotSegmentsAreRefused) {
    expectRefused("/static/../secret.txt");
    expectRefused("/static/sub/../../secret.txt");
    expectRefused("/static/./../secret.txt");
    expectRefused("/static/..");
}

TEST_F(StaticFiles, EncodedDotDotIsRefused) {
    expectRefused("/static/%2e%2e/secret.txt");
    expectRefused("/static/%2E%2E/secret.txt");
    expectRefused("/static/..%2fsecret.txt");
    expectRefused("/static/%2e%2e%2fsecret.txt");
    expectRefused("/static/sub%2f..%2f..%2fsecret.txt");
    expectRefused("/static/..%5csecret.txt");
}

TEST_F(StaticFiles, SymlinksLeadingOutsideAreRefused) {
    ASSERT_TRUE(fs::is_symlink(root_ / "leak.txt"));
    expectRefused("/static/leak.txt");
    expectRefused("/static/up/secret.txt");
    expectRefused("/static/up/root/../secret.txt");
    // A link that stays inside is fine.
    const auto alias = get("/static/alias.css");
    ASSERT_TRUE(alias);
    EXPECT_EQ(alias->status, 200);
    EXPECT_EQ(alias->body, "body { margin: 0 }\n");
}

TEST_F(StaticFiles, SiblingDirectoryWithTheRootAsPrefixIsOutside) {
    // "root-other" starts with "root" as a string, not as a path.
    fs::create_directories(base_ / "root-other");
    write(base_ / "root-other" / "f.txt", "top secret too\n");
    fs::create_symlink(base_ / "root-other" / "f.txt", root_ / "sibling.txt");
    expectRefused("/static/sibling.txt");
}

} // namespace
} // namespace tongdao::test
