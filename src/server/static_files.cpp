#include "http_session.hpp"

#include <fstream>
#include <system_error>

namespace tongdao::detail {

namespace fs = std::filesystem;

namespace {

// Files larger than this are not served from memory.
constexpr std::uintmax_t maxFileSize = 64 * 1024 * 1024;

int hexValue(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Percent-decodes a path (RFC 3986 §2.1); false on a malformed escape or a NUL.
bool decodePath(std::string_view in, std::string& out) {
    out.clear();
    for (std::size_t i = 0; i < in.size(); ++i) {
        char c = in[i];
        if (c == '%') {
            if (i + 2 >= in.size()) return false;
            const int hi = hexValue(in[i + 1]), lo = hexValue(in[i + 2]);
            if (hi < 0 || lo < 0) return false;
            c = static_cast<char>(hi * 16 + lo);
            i += 2;
        }
        if (c == '\0') return false;
        out += c;
    }
    return true;
}

} // namespace

std::string_view contentType(std::string_view name) noexcept {
    const auto dot = name.rfind('.');
    const auto ext = dot == std::string_view::npos ? std::string_view{} : name.substr(dot + 1);
    struct Type {
        std::string_view ext, type;
    };
    static constexpr Type types[] = {
        {"html", "text/html; charset=utf-8"}, {"htm", "text/html; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},   {"js", "text/javascript; charset=utf-8"},
        {"mjs", "text/javascript; charset=utf-8"}, {"json", "application/json"},
        {"map", "application/json"},          {"txt", "text/plain; charset=utf-8"},
        {"md", "text/markdown; charset=utf-8"}, {"svg", "image/svg+xml"},
        {"png", "image/png"},                 {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},               {"gif", "image/gif"},
        {"webp", "image/webp"},               {"ico", "image/x-icon"},
        {"wasm", "application/wasm"},         {"woff2", "font/woff2"},
        {"woff", "font/woff"},                {"pdf", "application/pdf"},
    };
    for (const auto& t : types)
        if (ext == t.ext) return t.type;
    return "application/octet-stream";
}

void serveFile(std::string_view prefix, const fs::path& root, const HttpRequest& req, HttpResponse& res) {
    std::string rel;
    if (!decodePath(req.path().substr(prefix.size()), rel) || rel.find('\\') != std::string::npos)
        return void(res.text("bad path\n", 400));
    // No segment may climb out of the root, or hide in "." tricks.
    fs::path path = root;
    std::size_t start = 0;
    while (start <= rel.size()) {
        const auto slash = rel.find('/', start);
        const auto seg = std::string_view(rel).substr(start, slash == std::string::npos ? std::string::npos : slash - start);
        if (seg == "..") return void(res.text("bad path\n", 400));
        if (!seg.empty() && seg != ".") path /= std::string(seg);
        if (slash == std::string::npos) break;
        start = slash + 1;
    }
    std::error_code ec;
    if (fs::is_directory(path, ec)) path /= "index.html";
    // Symbolic links must not lead outside the root either.
    const auto real = fs::weakly_canonical(path, ec);
    const auto realRoot = fs::weakly_canonical(root, ec);
    const auto [rootEnd, realIt] = std::mismatch(realRoot.begin(), realRoot.end(), real.begin(), real.end());
    (void)realIt;
    if (ec || rootEnd != realRoot.end() || !fs::is_regular_file(real, ec)) return void(res.text("not found\n", 404));
    const auto size = fs::file_size(real, ec);
    if (ec || size > maxFileSize) return void(res.text("file too large\n", 404));
    std::ifstream in(real, std::ios::binary);
    std::string body(static_cast<std::size_t>(size), '\0');
    if (!in.read(body.data(), static_cast<std::streamsize>(size))) return void(res.text("cannot read file\n", 500));
    res.status = 200;
    res.body = std::move(body);
    res.setHeader("Content-Type", std::string(contentType(real.filename().string())));
    res.setHeader("Cache-Control", "no-cache");
}

} // namespace tongdao::detail
