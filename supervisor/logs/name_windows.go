package logs

// colonIsSeparator: on Windows "web:1.log" is the stream "1.log" of the file "web".
const colonIsSeparator = true
