eval --lua "local t = {} for i = 1, 3 do t[i] = i * 10 end return t"
