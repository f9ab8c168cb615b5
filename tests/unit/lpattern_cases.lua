-- Differential cases for tests/unit/test_lpattern.c: every case runs through
-- the stock string library and through interp/lpattern.c, and the results
-- (or error messages) must be identical.
--
--   find: {subject, pattern, init = n, plain = b}; each case is run through
--         string.find(s, p, init, plain), string.match(s, p, init),
--         string.gmatch(s, p, init) (all iterations) and string.gsub(s, p, "[%0]").
--   gsub: {subject, pattern, replacement, n = max}; string.gsub(s, p, repl, max).
--   misc: Lua chunks; their results (or error) are compared.

local find, gsub, misc = {}, {}, {}

local function F(s, p, init, plain)
	find[#find + 1] = {s, p, init = init, plain = plain}
end

local function G(s, p, r, n)
	gsub[#gsub + 1] = {s, p, r, n = n}
end

-- Cross product: every pattern against every subject.
local subjects = {
	"hello world from Lua 5.4",
	"  key = value ; x=(a(b)c) [1,2] 3.14e-2 %d $x ^y ",
	"aaa bbb aaab abab THE (quick) fox... ]] [[",
	"Ab1 \t\n!~\0\127\128\200\255_Z9fF-]",
	"",
}

local patterns = {
	-- single items and quantifiers
	"o", "l+", "l*", "l-", "l?", "x*", "x-", "x?", "x+", ".", ".-", ".*", ".+",
	"a-b", "a*b", "a+b", "ab?", "b?a", "[ab]-b$", ".-%s", ".*%s", "%s.-%s",
	-- anchors
	"^", "$", "^$", "^.-", "^.*$", ".-$", "^%a", "^ ", "%d$", "^(.-)$", "a$b", "^^",
	"$$", "^%s*(.-)%s*$",
	-- classes and complements
	"%a+", "%A+", "%c+", "%C+", "%d+", "%D+", "%g+", "%G+", "%l+", "%L+",
	"%p+", "%P+", "%s+", "%S+", "%u+", "%U+", "%w+", "%W+", "%x+", "%X+",
	"%z", "%Z+", "%.", "%%", "%(", "%)", "%$", "%^", "%]", "%[", "%-", "%*",
	-- sets
	"[%a_][%w_]*", "[^%s]+", "[aeiou]", "[^aeiou]+", "[a-f]+", "[%d%.eE%-]+",
	"[]]", "[^]]+", "[a-]", "[-a]+", "[%]%[]+", "[z-a]", "[%a-]+", "[\0-\31]+",
	"[\128-\255]+", "[a-%d]", "[%w%p]+", "[^%w%s]", "[^^]", "[%^]", "[.]",
	-- captures
	"(%a+)", "(%a+)%s*=%s*(%a+)", "()(%a+)()", "()", "(())", "(o)(.)",
	"((%a)(%a))", "(%d+)%.(%d+)", "()$", "^()",
	-- back-references
	"(l)%1", "(.)%1", "(%a)(%a)%2%1", "(%a+) %1", "()a%1", "(a*)%1",
	-- balance and frontier
	"%b()", "%b[]", "%b((", "%bab", "%b][", "%f[%a]%a+", "%f[%A]", "%f[%w]",
	"%f[%z]", "%f[^\0]", "%f[%p]", "%f[%l]%l+%f[%L]",
	-- errors
	"%", "[a", "[^", "[%", "[", "(", ")", "%b", "%ba", "%f", "%fa", "%f[a",
	"%1", "(a%1)", "%0", "(()", "((a)", "a)", "[a-%]", "%g%",
}

for _, s in ipairs(subjects) do
	for _, p in ipairs(patterns) do
		F(s, p)
	end
end

-- init (positive, negative, out of range) and plain
F("hello world", "o", 6)
F("hello world", "o", -3)
F("hello world", "o", -100)
F("hello world", "o", 0)
F("hello world", "o", 11)
F("hello world", "o", 12)
F("hello world", "o", 13)
F("hello world", "", 12)
F("hello world", "", 13)
F("hello world", "", -1)
F("hello world", "%w+", 3)
F("hello world", "%w+", -5)
F("hello world", "^w", 7)
F("hello world", "^l", -8)
F("hello world", "()", 4)
F("hello world", "o", 2.0)
F("hello world", "o", "5")
F("hello world", "o", 2.5)
F("hello world", "o", "x")
F("hello world", "o", math.mininteger)
F("hello world", "o", math.maxinteger)
F("", "", 1)
F("", "", 2)
F("", "", -1)
F("a.b", ".", nil, true)
F("a+b", "+", nil, true)
F("a+b", "a+", nil, true)
F("a%b", "%", nil, true)
F("a[b", "[", nil, true)
F("abc", "", nil, true)
F("abc", "", 4, true)
F("abc", "", 5, true)
F("abcabc", "cab", 2, true)
F("abcabc", "abc", 2, true)
F("abcabc", "abc", -3, true)
F("aaab", "aab", nil, true)
F("aaaaaaaaab", "aaaab", nil, true)
F("x", "xyz", nil, true)
F("abc", "c", -1, true)
F("abc", "abcd", nil, true)
F("a.b", ".", nil, false)
F("a.b", ".", nil, 0)
F("a.b", ".", nil, "yes")
F("a\0b\0c", "\0c")
F("a\0b", "b\0")
F("a\0.b", "\0.")
F("a\0.b", "%z.")
F("xa\0b", "a\0b")
F("a\0b", "[\0]")
F("a\0b", "[^\0]+")
F(12345, "34")
F(12345, 34)
F(1.5, "%.")
F("a123", 23)
-- anchors: '^' is literal inside gmatch only
F("^a^a", "^a")
F("a^b", "a^b")
F("a$b", "$b")
F("hello", "^hello$")
F("hello", "^", 3)
F("hello", "$", 3)
F("hello", "^l", 3)
-- %b and %f corner cases
F("f(a(b)c)d(e)", "%b()")
F("f(a(b)c", "%b()")
F("((((", "%b()")
F("))((", "%b)(")
F("x[a]y[[b]]", "%b[]%b[]")
F("xaxbx", "%bxx")
F("THE (quick) fox", "%f[%a]%a+%f[%A]")
F("hello", "%f[%z]")
F("hello", "%f[%a]", 2)
F("hello", "o%f[\0]")
F("key=val", "%f[=]")
F("a,b,,c", "%f[^,]")
-- long subjects, deep but legal recursion, and "pattern too complex"
F(("a"):rep(300), "a-b")
F(("a"):rep(300), ".-.-b")
F(("a"):rep(300) .. "b", ".-.-b")
F(("a"):rep(199), ("a?"):rep(199))
F(("a"):rep(250), ("a?"):rep(250))
F(("x"):rep(10), (".-"):rep(201))
F(("x"):rep(10), (".-"):rep(150))
F(("(a)"):rep(40), ("%(a%)"):rep(40))
F("", ("()"):rep(32))
F("", ("()"):rep(33))
F(("a"):rep(33), ("(a)"):rep(33))
F(("ab"):rep(100), "(ab)%1%1")
F(("ab"):rep(100), "(a(b))%1%2")
F(("ab"):rep(100), "(.*)%1$")
F(("ab"):rep(100) .. "a", "^(.-)%1")
-- character classes over every byte
local all = {}
for i = 0, 255 do all[#all + 1] = string.char(i) end
all = table.concat(all)
for _, c in ipairs({"a", "c", "d", "g", "l", "p", "s", "u", "w", "x"}) do
	F(all, "%" .. c .. "+")
	F(all, "%" .. c:upper() .. "+")
	F(all, "[%" .. c .. "]+", 3)
	F(all, "[^%" .. c .. "]+")
end
F(all, "[%z]")
F(all, "%Z+")
F(all, "[\1-\9%d]+")
F(all, "[\200-\210]+")

-- gsub: string replacements
G("hello world", "o", "0")
G("hello world", "o", "0", 1)
G("hello world", "o", "0", 0)
G("hello world", "o", "0", -1)
G("hello world", "o", "0", 2.0)
G("hello world", "o", "0", 1.5)
G("hello world", "o", "0", "1")
G("hello world", "(%w+)", "<%1>")
G("hello world", "%w+", "%0 %0")
G("hello world", "(%w+)", "%2")
G("hello world", "%w+", "%1")
G("hello world", "%w+", "%2")
G("hello world", "(%w+) (%w+)", "%2 %1")
G("hello world", "", "-")
G("hello world", "x*", "-")
G("hello world", ".-", "-")
G("", "", "x")
G("", "x", "y")
G("hello", "^", ">")
G("hello", "$", "<")
G("hello", "^h", "H")
G("hello hello", "^hello", "X", 5)
G("hello", "(l)(l)", "%2%1")
G("hello", "()", "%1")
G("hello", "()ll()", "[%1,%2]")
G("hello", "l", "%%")
G("hello", "l", "100%")
G("hello", "l", "%x")
G("hello", "l", "%")
G("hello", "l", 42)
G("hello", "l", 1.5)
G("hello", "(", "x")
G("hello", "%", "x")
G("abc", "%w", "%0%0", 2)
G("a,b,,c", "%f[^,]", "|")
G("abc", "b*", "-")
G("a\0b\0c", "%z", "0")
G("x = 1, y = 2", "(%w+)%s*=%s*(%w+)", "%2=%1")
G(12345, 3, 9)
G("aaa", "a", "b", math.maxinteger)
G("aaa", "a", "b", math.mininteger)
G(("ab"):rep(50), "(a)(b)", "%2%1%0", 30)
-- table replacements
G("$name is $age", "%$(%w+)", {name = "bob", age = 42})
G("$name is $x", "%$(%w+)", {name = "bob"})
G("$name is $x", "%$(%w+)", {name = false, x = "ex"})
G("$name", "%$(%w+)", {name = {}})
G("$name", "%$(%w+)", {name = true})
G("$name", "%$(%w+)", {name = 1.25})
G("hello", "()l", {[3] = "L", [4] = "M"})
G("hello", "l+", {ll = "LL"})
G("hello", "(h)(e)", {h = "H"})
G("hello", "%w", {}, 2)
-- function replacements
G("hello world", "%w+", string.upper)
G("hello world", "(%w)(%w*)", function(a, b) return a:upper() .. b end)
G("hello world", "%w+", function() end)
G("hello world", "%w+", function() return false end)
G("hello world", "%w+", function(w) return #w end)
G("hello world", "%w+", function() return {} end)
G("hello world", "%w+", function() return true end)
G("hello world", "%w+", function(w) error("bad " .. w) end)
G("hello world", "%w+", function(w) error({w}) end)
G("hello world", "()(%w+)()", function(...) return "<" .. table.concat({...}, ",") .. ">" end)
G("hello world", "", function(...) return "<" .. select("#", ...) .. ">" end)
G("hello world", "o", function(...) return "<" .. select("#", ...) .. ">" end, 1)
G("hello world", "l", function(l) return l .. l end, 2)
G("abc", "%w", function(c) return c:byte() end)
G("abc", "(%w)", function(c) return ("x"):rep(c:byte() - 96) end)
G("a=1, b=2", "(%w+)=(%w+)", function(k, v) return v .. "=" .. k end)
G("hello", "(l", function() return "x" end)
G("hello", "l", "x", nil)

-- misc: argument handling and iterator behaviour
misc = {
	"return string.find()",
	"return string.find('a')",
	"return string.find('a', {})",
	"return ('abc'):find({})",
	"return ('abc'):find()",
	"return string.match()",
	"return string.gsub('abc', 'b')",
	"return string.gsub('abc', 'b', true)",
	"return string.gsub('abc', 'b', nil)",
	"return string.gsub('abc', 'b', 'x', {})",
	"return string.gmatch()",
	"return string.gmatch('abc')",
	"return string.gmatch('abc', 'b', 'z')",
	"return select('#', string.gmatch('abc', 'x')())",
	"return string.gmatch('abc', '.', math.maxinteger)()",
	"return string.gmatch('abc', '.', math.mininteger)()",
	"return string.gmatch('abc', '.', -1)()",
	"return string.gmatch('abc', '', 4)()",
	"local it = string.gmatch('abc', '', 5); return it()",
	"local it = string.gmatch('abc', '%'); local ok, e = pcall(it); return ok, e, pcall(it)",
	"local it = string.gmatch('aaa', 'a'); return it(), it(), it(), it(), it()",
	"local it = string.gmatch('a,b', '[^,]*'); return it(), it(), it(), it()",
	"local t = {} for k, v in string.gmatch('a=1, b=2', '(%w+)=(%w+)') do t[#t + 1] = k .. v end return table.concat(t, ',')",
	"local t = {} for w in string.gmatch('one two three', '%a+', 5) do t[#t + 1] = w end return table.concat(t, ' ')",
	"local t = {} for a, b in string.gmatch('one two three', '()(%a+)', -6) do t[#t + 1] = a .. b end return table.concat(t, ' ')",
	"return ('abc'):gsub('%w', setmetatable({}, {__index = function(t, k) return k:upper() end}))",
	"return ('abc'):gsub('%w', setmetatable({}, {__index = function(t, k) return nil end}))",
	"return ('x'):rep(5):gsub('x', '%0%0', 3)",
	"return string.find(('a'):rep(1000) .. 'b', ('a'):rep(500) .. 'b')",
	"return string.find(('a'):rep(1000) .. 'b', ('a'):rep(500) .. 'b', 1, true)",
	"return string.find(('a'):rep(1000), ('a'):rep(1001), 1, true)",
	"return string.find(('ab'):rep(300), ('ab'):rep(100) .. 'b', 1, true)",
	"return string.match(('a'):rep(1000), '(a+)(a-)(a*)$')",
	"return string.match(('('):rep(100) .. (')'):rep(100), '%b()')",
	"return string.gsub(('x'):rep(100), 'x', {x = 'y'}, 50)",
	"return #string.gsub(('x'):rep(10000), 'x', 'yy')",
	"return select('#', string.find('', ('()'):rep(32)))",
	"return string.match('  trim me  ', '^%s*(.-)%s*$')",
	"return string.find('abc', 'b', nil, true)",
	"return string.find('abc', 'b', nil, nil)",
	"return pcall(string.find, 'abc', '[')",
	"return pcall(string.gsub, 'abc', 'b', true)",
	"return pcall(string.gmatch('abc', '(()'))",
	"return string.gsub('abc', '.', {a = 1, b = 2.5})",
	"return string.gsub('hello', '(l)(l)', function(a, b) return nil end)",
	"local n = 0; local r = string.gsub('abc', '%w', function() n = n + 1 end); return r, n",
	"return coroutine.wrap(function() return string.gsub('abc', '%w', function(c) return c .. c end) end)()",
	"return pcall(coroutine.wrap(function() return string.gsub('abc', '%w', function(c) coroutine.yield(c) end) end))",
}

return {find = find, gsub = gsub, misc = misc}
